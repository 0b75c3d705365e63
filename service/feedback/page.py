"""The answer page of a survey link, as HTML: plain, one form, no script, readable on a phone, in the
customer's language (defaults.PAGE). Everything shown is escaped here."""

from __future__ import annotations

from datetime import date
from html import escape

from babel.dates import format_date

from service.feedback.defaults import PAGE

_STYLE = """body{font-family:system-ui,sans-serif;line-height:1.5;margin:0;padding:1em;color:#222}
main{max-width:34em;margin:0 auto}fieldset{border:0;padding:0;margin:0 0 1.2em}legend{font-weight:600;margin-bottom:.5em}
.scores{display:flex;flex-wrap:wrap;gap:.3em}.scores label{flex:1 0 2.4em}
.scores input{position:absolute;opacity:0}.scores span{display:block;text-align:center;padding:.6em 0;border:1px solid #888;border-radius:4px}
.scores input:checked+span{background:#222;color:#fff}.scores input:focus-visible+span{outline:2px solid #06c}
.hint{font-size:.9em;color:#555}textarea{width:100%;box-sizing:border-box;font:inherit}
button{font:inherit;padding:.6em 1.2em;margin-top:.8em}.error{color:#a00;font-weight:600}.rating{margin:.3em 0}"""


def _document(locale: str, title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body><main>{body}</main></body></html>\n"
    )


def notice(locale: str, key: str, heading: str | None = None) -> str:
    """A page that only says something: thanks, an expired or forged link, a closed survey."""
    texts = PAGE[locale]
    head = f"<h1>{escape(heading)}</h1>" if heading else ""
    return _document(locale, texts["title"], f"{head}<p>{escape(texts[key])}</p>")


def _radios(name: str, low: int, high: int, chosen: int | None, *, required: bool) -> str:
    return "".join(
        f'<label><input type="radio" name="{name}" value="{n}"{" checked" if n == chosen else ""}'
        f"{' required' if required else ''}><span>{n}</span></label>"
        for n in range(low, high + 1)
    )


def form(
    *,
    locale: str,
    shop: str,
    question: str,
    kind: str,
    low: int,
    high: int,
    chosen: int | None,
    dimensions: list[tuple[str, str, int | None]],  # key, label, rating chosen
    comment: str,
    csrf: str,
    answered: bool,
    changeable_on: date | None,  # the last day it can be changed, in the program's time zone
    error: str | None = None,
    thanked: bool = False,
) -> str:
    """The form: the scores (the link's preselected), the survey's dimensions, a comment box. After an
    answer it shows it again, with thanks, changeable until its week ends."""
    texts = PAGE[locale]
    parts = [f"<h1>{escape(shop)}</h1>"]
    if thanked:
        parts.append(f'<p role="status"><strong>{escape(texts["thanks"])}</strong></p>')
    if error:
        parts.append(f'<p class="error" role="alert">{escape(texts[error])}</p>')
    parts.append(f'<form method="post"><input type="hidden" name="csrf" value="{escape(csrf)}">')
    parts.append(
        f"<fieldset><legend>{escape(question)}</legend>"
        f'<div class="scores">{_radios("score", low, high, chosen, required=True)}</div>'
        f'<p class="hint">{escape(texts["scale_" + kind])}</p></fieldset>'
    )
    if dimensions:
        rows = "".join(
            f'<div class="rating"><div>{escape(label)}</div><div class="scores">'
            f"{_radios('dimension.' + key, 1, 5, rating, required=False)}</div></div>"
            for key, label, rating in dimensions
        )
        parts.append(f"<fieldset><legend>{escape(texts['dimensions'])}</legend>{rows}</fieldset>")
    parts.append(
        f'<label for="comment">{escape(texts["comment"])}</label>'
        f'<textarea id="comment" name="comment" rows="5" maxlength="5000">{escape(comment)}</textarea>'
        f'<button type="submit">{escape(texts["change" if answered else "send"])}</button></form>'
    )
    if answered and changeable_on is not None:
        day = format_date(changeable_on, format="long", locale=locale)
        parts.append(f'<p class="hint">{escape(texts["changeable"].format(date=day))}</p>')
    return _document(locale, texts["title"], "".join(parts))
