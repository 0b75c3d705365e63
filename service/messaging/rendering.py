"""Templates: sandboxed Jinja2 with Babel helpers (money, numbers, dates, CLDR plurals) per locale.

A template is three parts (subject, text, html body); the layout of the locale (greeting, signature,
footer with the unsubscribe link) is rendered around them. Defaults ship in `defaults/<locale>.toml`;
programs override a type per locale. `check` is the save-time gate: syntax, unknown variables and sample
renders over numbers that reach every plural category of the locale, each error with its part and line.
Programs' templates run in `bounds.BoundedSandbox`, every render under `bounds.render_budget()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import tomllib
import traceback
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from jinja2 import Environment, StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from markupsafe import Markup, escape

from service.core.money import exponent
from service.messaging import bounds
from service.messaging.bounds import RenderLimit
from service.messaging.catalogue import MESSAGE_TYPES, sample_context, sample_customer
from service.messaging.processes import RENDERERS
from service.messaging.variables import latvian_vocative

PARTS: tuple[str, ...] = ("subject", "text", "html")
LAYOUT_PARTS: tuple[str, ...] = (
    "greeting",
    "signature",
    "footer_marketing",
    "footer_transactional",
    "footer_staff",
)
_DEFAULTS_DIR = Path(__file__).parent / "defaults"
# Numbers that between them reach every CLDR plural category of the shipped locales (cy: 0 1 2 3 6).
PLURAL_PROBES: tuple[int, ...] = (0, 1, 2, 3, 5, 6, 11, 21, 22, 100)
MAX_PART_CHARS = {"subject": 1_000, "text": 50_000, "html": 100_000}


class TemplateProblem(Exception):
    """A template that cannot be used: which part, which line, what is wrong."""

    def __init__(self, part: str, line: int | None, error: str, limit: str | None = None) -> None:
        super().__init__(f"{part}{f' line {line}' if line else ''}: {error}")
        self.part = part
        self.line = line
        self.error = error
        self.limit = limit  # the render limit it went over (bounds.RenderLimit.limit), if that was it

    def __reduce__(self) -> tuple[Any, ...]:  # it comes back from a render process
        return (TemplateProblem, (self.part, self.line, self.error, self.limit))


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1024)  # signatures: one per program and locale
def _nl2br(value: str) -> Markup:
    return Markup("<br>\n").join(escape(line) for line in str(value).split("\n"))


def _environment(*, html: bool, sandboxed: bool) -> Environment:
    env = (bounds.BoundedSandbox if sandboxed else Environment)(
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
        cache_size=0,
    )
    env.filters["nl2br"] = _nl2br
    return env


# Programs' templates run sandboxed; the shipped defaults are our own code and skip the sandbox's
# per-call checks (a third of the render time).
_ENVIRONMENTS = {
    (html, sandboxed): _environment(html=html, sandboxed=sandboxed)
    for html in (False, True)
    for sandboxed in (False, True)
}


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    subject: Template
    text: Template
    html: Template
    # The three parts as one template (subject and text in autoescape-off blocks, parts separated by NUL,
    # which no stored value can hold): one render context per message instead of three.
    whole: Template | None = None
    bounded: bool = True  # a program's template: rendered under a budget (our defaults are not)

    def render_parts(self, context: dict[str, Any]) -> tuple[str, str, str]:
        if not self.bounded:
            return self._render_parts(context)
        with bounds.render_budget():
            parts = self._render_parts(context)
        if sum(map(len, parts)) > bounds.MAX_OUTPUT_CHARS:  # escaping can still grow what was written
            raise RenderLimit("output", f"over the render limit: {bounds.LIMITS_IN_WORDS['output']}")
        return parts

    def _render_parts(self, context: dict[str, Any]) -> tuple[str, str, str]:
        if self.whole is not None:
            parts = self.whole.render(context).split(_PART_SEPARATOR)
            if len(parts) == 3:
                return parts[0], parts[1], parts[2]
        return self.subject.render(context), self.text.render(context), self.html.render(context)


_PART_SEPARATOR = "\x00"


def _env(part: str, *, trusted: bool = False) -> Environment:
    return _ENVIRONMENTS[(part == "html", not trusted)]


def _line_of(error: BaseException) -> int | None:
    """The template line a render error happened on (Jinja rewrites tracebacks to template frames)."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == "<template>":
            line = frame.lineno
    return line


MAX_TEMPLATE_NODES = 20_000  # what a long, busy template has is a few thousand; compiling costs per node


def _compiled(env: Environment, tree: nodes.Template, part: str = "html") -> Template:
    if isinstance(env, bounds.BoundedSandbox):
        if sum(1 for _ in tree.find_all(nodes.Node)) > MAX_TEMPLATE_NODES:
            raise TemplateProblem(part, None, f"more than {MAX_TEMPLATE_NODES:,} expressions and statements")
        tree = bounds.add_checks(tree, env)
    try:
        return env.from_string(tree)
    except TemplateSyntaxError:
        raise
    except Exception as exc:  # Python's own limits on what the template compiles to (nesting, digits)
        raise TemplateProblem(part, None, f"cannot be compiled: {type(exc).__name__}: {exc}") from None


def _parsed(env: Environment, part: str, source: str) -> nodes.Template:
    try:
        return env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(part, exc.lineno, exc.message or "syntax error") from None
    except Exception as exc:  # nesting past Python's recursion limit, a number past its digit limit
        raise TemplateProblem(part, None, f"cannot be read: {type(exc).__name__}: {exc}") from None


def compile_part(part: str, source: str, allowed: frozenset[str], *, trusted: bool = False) -> Template:
    if len(source) > MAX_PART_CHARS[part]:
        raise TemplateProblem(part, None, f"longer than {MAX_PART_CHARS[part]} characters")
    env = _env(part, trusted=trusted)
    tree = _parsed(env, part, source)
    unknown = meta.find_undeclared_variables(tree) - allowed
    if unknown:
        name = sorted(unknown)[0]
        line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), None)
        raise TemplateProblem(part, line, f"unknown variable '{name}'")
    return _compiled(env, tree, part)


def compile_template(
    message_type: str, sources: Mapping[str, str], *, trusted: bool = False
) -> CompiledTemplate:
    allowed = MESSAGE_TYPES[message_type].allowed_names
    parts = {part: compile_part(part, sources[part], allowed, trusted=trusted) for part in PARTS}
    whole_source = (
        f"{{% autoescape false %}}{sources['subject']}{{% endautoescape %}}{_PART_SEPARATOR}"
        f"{{% autoescape false %}}{sources['text']}{{% endautoescape %}}{_PART_SEPARATOR}{sources['html']}"
    )
    env = _env("html", trusted=trusted)
    try:
        whole: Template | None = _compiled(env, env.parse(whole_source))
    except (TemplateSyntaxError, TemplateProblem):  # parts that only compile alone: render them so
        whole = None
    return CompiledTemplate(**parts, whole=whole, bounded=not trusted)


# The API's renders (save checks, previews) run in the render processes, never on the event loop: one
# thread per process waits for each. A request that renders holds its program's render slot from before
# it takes a database connection: one program's costly previews queue behind each other, holding
# nothing, not in front of another program's.
API_RENDER_SECONDS = 5.0  # the render's own CPU limit, plus reading and compiling a long source
_RENDER_THREADS = ThreadPoolExecutor(max_workers=RENDERERS.size, thread_name_prefix="encore-render")
_PROGRAM_RENDERS: weakref.WeakValueDictionary[UUID, asyncio.Semaphore] = weakref.WeakValueDictionary()
R = TypeVar("R")


@contextlib.asynccontextmanager
async def render_slot(program_id: UUID) -> AsyncIterator[None]:
    """The program's one render at a time (controllers take it around a request that renders)."""
    slot = _PROGRAM_RENDERS.get(program_id)
    if slot is None:
        slot = _PROGRAM_RENDERS[program_id] = asyncio.Semaphore(1)
    async with slot:
        yield


async def isolated(function: Callable[..., R], *args: Any) -> R:
    """`function(*args)` in a render process."""
    return await asyncio.get_running_loop().run_in_executor(
        _RENDER_THREADS, functools.partial(RENDERERS.run, function, *args, timeout=API_RENDER_SECONDS)
    )


# --- helpers the templates call --------------------------------------------------------------------


_CACHE_SIZE = 65_536


K = TypeVar("K")
V = TypeVar("V")


class _BoundedDict(dict[K, V]):
    """A memo that stops growing at _CACHE_SIZE entries (later values are still computed, not stored)."""

    def __setitem__(self, key: K, value: V) -> None:
        if len(self) < _CACHE_SIZE:
            super().__setitem__(key, value)


class _Helpers:
    """`money`, `number`, `date`, `plural`, `vocative` bound to one locale. Strict: every plural() must
    give every CLDR category of the locale (the save-time check); lenient (sending): a missing one falls
    back."""

    def __init__(self, locale: str, *, strict: bool) -> None:
        self.locale = Locale.parse(locale)
        self.strict = strict
        self.needed = self.locale.plural_form.tags | {"other"}
        # Babel formats slowly (a pattern applied per call); a sweep formats the same few values often.
        self._numbers: _BoundedDict[int, str] = _BoundedDict()
        self._money: _BoundedDict[tuple[int, str], str] = _BoundedDict()
        self._categories: _BoundedDict[int | float, str] = _BoundedDict()
        self._dates: _BoundedDict[tuple[date, str], str] = _BoundedDict()

    def number(self, value: int | float | Decimal) -> str:
        if type(value) is int:
            cached = self._numbers.get(value)
            if cached is None:
                cached = format_decimal(value, locale=self.locale)
                self._numbers[value] = cached
            return cached
        return format_decimal(value, locale=self.locale)

    def money(self, value: Mapping[str, Any]) -> str:
        key = (int(value["amount"]), str(value["currency"]))
        cached = self._money.get(key)
        if cached is None:
            amount = Decimal(key[0]).scaleb(-exponent(key[1]))
            cached = format_currency(amount, key[1], locale=self.locale)
            self._money[key] = cached
        return cached

    def date(self, value: date | datetime | str, format: str = "long") -> str:
        if isinstance(value, str):
            value = date.fromisoformat(value[:10])
        if isinstance(value, datetime):
            value = value.date()
        key = (value, format)
        cached = self._dates.get(key)
        if cached is None:
            cached = format_date(value, format=format, locale=self.locale)
            self._dates[key] = cached
        return cached

    def plural(self, count: int, **forms: str) -> str:
        missing = self.needed - forms.keys()
        if self.strict and missing:
            raise ValueError(
                f"plural() needs the forms {', '.join(sorted(missing))} for locale '{self.locale}'"
            )
        category = self._categories.get(count)
        if category is None:
            category = self.locale.plural_form(count)
            self._categories[count] = category
        form = forms.get(category) or forms.get("other") or next(iter(forms.values()), "#")
        return form.replace("#", self.number(count)) if "#" in form else form

    def vocative(self, name: str | None) -> str:
        """The name as the customer is addressed: Latvian inflects it (Jānis -> Jāni), others keep it."""
        if not name:
            return ""
        return latvian_vocative(str(name)) if self.locale.language == "lv" else str(name)

    def as_context(self) -> dict[str, Callable[..., str]]:
        return {
            "money": self.money,
            "number": self.number,
            "date": self.date,
            "plural": self.plural,
            "vocative": self.vocative,
        }


@cache
def _helpers(locale: str, strict: bool) -> dict[str, Callable[..., str]]:
    return _Helpers(locale, strict=strict).as_context()


# --- defaults ------------------------------------------------------------------------------------


@cache
def default_sources(locale: str) -> dict[str, dict[str, str]]:
    with (_DEFAULTS_DIR / f"{locale}.toml").open("rb") as file:
        data: dict[str, dict[str, str]] = tomllib.load(file)
    return data


@cache
def default_template(locale: str, message_type: str) -> CompiledTemplate:
    return compile_template(message_type, default_sources(locale)[message_type], trusted=True)


@cache
def layout(locale: str) -> dict[str, Template]:
    sources = default_sources(locale)["_layout"]
    return {part: _env("text", trusted=True).from_string(sources[part]) for part in LAYOUT_PARTS}


# --- rendering -----------------------------------------------------------------------------------

_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _wrap_html(body: str, footer: str, unsubscribe_url: str, locale: str, subject: str) -> str:
    footer_html = str(escape(footer))
    if unsubscribe_url:  # a staff message has none
        footer_html = footer_html.replace(
            str(escape(unsubscribe_url)), f'<a href="{escape(unsubscribe_url)}">{escape(unsubscribe_url)}</a>'
        )
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(locale.replace("_", "-"))}">\n<head><meta charset="utf-8">'
        f"<title>{escape(subject)}</title></head>\n"
        '<body style="font-family: sans-serif; line-height: 1.5; max-width: 40em">\n'
        f'{body}\n<hr>\n<p style="font-size: smaller; color: #666">{footer_html}</p>\n</body>\n</html>\n'
    )


_UNSUBSCRIBE_PLACEHOLDER = "\x00unsubscribe\x00"


def _first_name(variables: Mapping[str, Any]) -> str | None:
    customer = variables.get("customer") or {}
    name = customer.get("first_name")
    return str(name) if name else None


@lru_cache(maxsize=4096)
def _layout_parts(
    template_locale: str, format_locale: str, category: str, first_name: str | None, program_name: str
) -> tuple[str, str, str]:
    """Greeting, signature and footer of a locale. They see only the first name, the program's name and
    the unsubscribe link (a placeholder here), so a sweep renders them once per name, not per message."""
    context = {
        "customer": {"first_name": first_name},
        "program": {"name": program_name},
        "unsubscribe_url": _UNSUBSCRIBE_PLACEHOLDER,
        **_helpers(format_locale, False),
    }
    parts = layout(template_locale)
    return (
        parts["greeting"].render(context),
        parts["signature"].render(context),
        parts[f"footer_{category}"].render(context),
    )


def _context(
    message_type: str, template_locale: str, format_locale: str, variables: Mapping[str, Any], *, strict: bool
) -> tuple[dict[str, Any], str]:
    """What a message's parts see (its variables, the helpers, the layout's greeting and signature) and
    its footer with the unsubscribe link."""
    category = MESSAGE_TYPES[message_type].category
    greeting, signature, footer = _layout_parts(
        template_locale, format_locale, category, _first_name(variables), str(variables["program"]["name"])
    )
    context: dict[str, Any] = {
        **variables,
        **_helpers(format_locale, strict),
        "locale": format_locale,
        "marketing": category == "marketing",
        "greeting": greeting,
        "signature": signature,
    }
    return context, footer.replace(_UNSUBSCRIBE_PLACEHOLDER, str(variables["unsubscribe_url"]))


def render(
    template: CompiledTemplate,
    *,
    message_type: str,
    template_locale: str,
    format_locale: str,
    variables: Mapping[str, Any],
) -> Rendered:
    """Render one message. `variables` holds the type's variables plus customer, program, unsubscribe_url."""
    context, footer = _context(message_type, template_locale, format_locale, variables, strict=False)
    subject, text, html = template.render_parts(context)
    subject = " ".join(subject.split())
    text = _BLANK_LINES.sub("\n\n", _TRAILING_SPACE.sub("\n", text).strip()) + "\n\n-- \n" + footer + "\n"
    html = _wrap_html(html, footer, str(variables["unsubscribe_url"]), format_locale, subject)
    return Rendered(subject=subject, text=text, html=html)


def sample_variables(
    message_type: str,
    count: int,
    *,
    now: datetime | None = None,
    program: Mapping[str, Any] | None = None,
    pending_days: int = 14,
) -> dict[str, Any]:
    """A sample customer's message: `now` in local time (dates follow from it), the program's own name."""
    return {
        **sample_context(message_type, points=count, now=now, pending_days=pending_days),
        "customer": sample_customer(count),
        "program": dict(program) if program else {"name": "Sample Shop", "url": "https://shop.example"},
        "unsubscribe_url": "https://encore.example/u/sample",
    }


def check_only(message_type: str, locale: str, sources: Mapping[str, str]) -> None:
    """`check` for a render process: the answer is whether, not the compiled template."""
    check(message_type, locale, sources)


def check(
    message_type: str, locale: str, sources: Mapping[str, str], probes: Iterable[int] = PLURAL_PROBES
) -> CompiledTemplate:
    """Compile and sample-render a template as `save` would; raises TemplateProblem (part, line, error).
    Each part is rendered on its own, strictly (every plural form the locale needs), to name it; each
    render under its own loop and output limits, all of them within one CPU limit."""
    template = compile_template(message_type, sources)
    with bounds.render_budget():
        for count in probes:
            context, _footer = _context(
                message_type, locale, locale, sample_variables(message_type, count), strict=True
            )
            for part in PARTS:
                try:
                    with bounds.render_budget():
                        getattr(template, part).render(context)
                except RenderLimit as exc:
                    raise TemplateProblem(part, _line_of(exc), exc.detail, limit=exc.limit) from None
                except Exception as exc:  # any render failure is the template's fault, reported with its line
                    raise TemplateProblem(part, _line_of(exc), f"{type(exc).__name__}: {exc}") from None
    return template
