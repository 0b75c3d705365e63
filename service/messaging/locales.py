"""Locales, decided without I/O: which tags a customer may have (any locale CLDR knows, kept in BCP 47
form), and which templates and formats a message in a customer's locale uses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from babel import Locale, UnknownLocaleError

from service.messaging.catalogue import LOCALES

# Tags Babel resolves by likely subtags although they name no language ("und" would become en-US).
_NO_LANGUAGE = frozenset({"und", "root"})


def bcp47(identifier: str) -> str:
    """Babel's identifier (`pt_BR`) as a BCP 47 tag (`pt-BR`)."""
    return identifier.replace("_", "-")


@lru_cache(maxsize=4096)
def _parsed(tag: str) -> Locale | None:
    if tag.replace("-", "_").split("_", 1)[0].lower() in _NO_LANGUAGE:
        return None
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return None


def canonical(tag: str) -> str | None:
    """The tag in its canonical BCP 47 form (`pt_br` -> `pt-BR`, `iw` -> `he-IL`), or None when CLDR does
    not know it. Stable: canonical(canonical(t)) == canonical(t)."""
    parsed = _parsed(tag)
    return None if parsed is None else bcp47(str(parsed))


@dataclass(frozen=True, slots=True)
class LocaleChoice:
    template_locale: str  # one of LOCALES: whose templates
    format_locale: str  # the customer's own locale when Babel knows it (en_GB dates), for numbers/dates
    note: str | None  # why the customer's locale was not used, if it was not


@lru_cache(maxsize=1024)
def choose_locale(requested: str | None, program_default: str) -> LocaleChoice:
    """The shipped templates of the customer's language (en-GB -> en, formatted as en_GB), else the
    program's default locale, said so in the note."""
    if requested:
        parsed = _parsed(requested)
        if parsed is not None and parsed.language in LOCALES:
            return LocaleChoice(parsed.language, str(parsed), None)
        why = "no templates for locale" if parsed is not None else "unknown locale"
        note = f"{why} '{requested}'; sent in '{program_default}', the program's default"
        return LocaleChoice(program_default, program_default, note)
    return LocaleChoice(program_default, program_default, None)
