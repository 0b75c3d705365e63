"""Personal notes of surprise gifts: a few warm lines in the customer's language, with their name and
what they bought, printed by the shop into the parcel (or shown in the surprise message).

A marketer may write a rule's own note: one Jinja template for every locale, run in the messaging
sandbox (`bounds.BoundedSandbox`) under a small CPU budget, because a note is rendered while an order
is placed. Without one, the shipped note of the customer's locale (`[gift_note]` in
`defaults/<locale>.toml`) is used. Notes are plain text: no HTML escaping, leading and trailing space
stripped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

from jinja2 import Template

from service.messaging import bounds, rendering
from service.messaging.bounds import RenderLimit
from service.messaging.catalogue import HELPERS, LOCALES, sample_context, sample_customer
from service.messaging.locales import choose_locale
from service.messaging.rendering import TemplateProblem

NOTE_VARIABLES: frozenset[str] = frozenset({"customer", "item", "order", "program"})
ALLOWED_NAMES: frozenset[str] = NOTE_VARIABLES | HELPERS
MAX_NOTE_SOURCE_CHARS = 2_000
MAX_NOTE_CHARS = 4_000  # what a rendered note may be: a card, not a letter
# A note is checked when a rule is saved and rendered while an order is placed: both stay small.
CHECK_CPU_SECONDS = 0.2  # every locale's sample render together
RENDER_CPU_SECONDS = 0.05
_PART = "text"  # problems are reported on the note's one part, as a message's text part would be
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _tidy(text: str) -> str:
    """What the shop prints: no space at line ends, at most one blank line in a row, none around."""
    return _BLANK_LINES.sub("\n\n", _TRAILING_SPACE.sub("\n", text)).strip()


@lru_cache(maxsize=1024)  # one per rule version in use; the source is the key
def _compiled(source: str) -> Template:
    if len(source) > MAX_NOTE_SOURCE_CHARS:
        raise TemplateProblem(_PART, None, f"longer than {MAX_NOTE_SOURCE_CHARS:,} characters")
    return rendering.compile_part(_PART, source, ALLOWED_NAMES)


@cache
def _default(locale: str) -> Template:
    """The shipped note of a locale: our own template, outside the sandbox."""
    source = rendering.default_sources(locale)["gift_note"]["text"]
    return rendering.compile_part(_PART, source, ALLOWED_NAMES, trusted=True)


def _context(
    format_locale: str,
    customer: Mapping[str, Any],
    item: Mapping[str, Any] | None,
    order: Mapping[str, Any] | None,
    program: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "customer": dict(customer),
        "item": dict(item) if item is not None else None,
        "order": dict(order) if order is not None else None,
        "program": dict(program),
        **rendering._helpers(format_locale, False),
    }


def _render_bounded(template: Template, context: dict[str, Any], cpu_seconds: float) -> str:
    """A marketer's note under its budget; any failure is the template's, as a TemplateProblem with its
    line (RenderLimit passes as itself: it names the limit)."""
    try:
        with bounds.render_budget(cpu_seconds=cpu_seconds):
            text = template.render(context)
    except RenderLimit:
        raise
    except Exception as exc:
        raise TemplateProblem(_PART, rendering._line_of(exc), f"{type(exc).__name__}: {exc}") from None
    if len(text) > MAX_NOTE_CHARS:
        raise RenderLimit(
            "output", f"over the render limit: a note of more than {MAX_NOTE_CHARS:,} characters"
        )
    # Jinja's string escapes can write what no record holds ("\x00", a lone surrogate): refused here, at
    # save for the sample and at give time for a customer's values, never at the write.
    try:
        text.encode()
    except UnicodeEncodeError:
        raise TemplateProblem(_PART, None, "the note writes an unpaired surrogate (\\ud800)") from None
    if "\x00" in text:
        raise TemplateProblem(_PART, None, "the note writes a NUL character (\\x00)")
    return _tidy(text)


def sample_item() -> dict[str, Any]:
    return {"name": "Trail shoes", "sku": "SHOE-1"}


def check_note(source: str, *, has_order: bool = True) -> None:
    """Compile a marketer's note and render it for a sample customer in every shipped locale, all within
    CHECK_CPU_SECONDS; raises TemplateProblem (part "text", line, error; `limit` when it went over one).
    `has_order`: the rule's trigger has an order (a sample item and order); False (birthday,
    anniversary): the note must read without them (`item` and `order` are null)."""
    template = _compiled(source)
    order = sample_context("order_thank_you", points=1)["order"] if has_order else None
    item = sample_item() if has_order else None
    program = {"name": "Sample Shop", "url": "https://shop.example"}
    try:
        with bounds.render_budget(cpu_seconds=CHECK_CPU_SECONDS):
            for locale in LOCALES:
                _render_bounded(
                    template, _context(locale, sample_customer(), item, order, program), CHECK_CPU_SECONDS
                )
    except RenderLimit as exc:
        raise TemplateProblem(_PART, rendering._line_of(exc), exc.detail, limit=exc.limit) from None


def render_note(
    locale: str | None,
    program_default_locale: str,
    source: str | None,
    *,
    customer: Mapping[str, Any],
    item: Mapping[str, Any] | None,
    order: Mapping[str, Any] | None,
    program: Mapping[str, Any],
) -> str:
    """The note in the customer's language (`locale`, else the program's default): the shipped one of
    that locale when `source` is None, else the marketer's, sandboxed and bounded (RENDER_CPU_SECONDS,
    MAX_NOTE_CHARS). `customer` as `variables.customer_vars` gives it, `item` {"name", "sku"} (what they
    bought, or None), `order` as `variables.order_vars` (or None), `program` {"name", ...}. Raises
    TemplateProblem or RenderLimit for a marketer's note that does not render (the gift's failure)."""
    choice = choose_locale(locale, program_default_locale)
    context = _context(choice.format_locale, customer, item, order, program)
    if source is None:
        return _tidy(_default(choice.template_locale).render(context))
    return _render_bounded(_compiled(source), context, RENDER_CPU_SECONDS)
