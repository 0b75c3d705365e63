"""Which templates and formats a message in a customer's locale uses, decided without I/O."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from service.core.locales import parsed
from service.messaging.catalogue import LOCALES


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
        found = parsed(requested)
        if found is not None and found.language in LOCALES:
            return LocaleChoice(found.language, str(found), None)
        why = "no templates for locale" if found is not None else "unknown locale"
        note = f"{why} '{requested}'; sent in '{program_default}', the program's default"
        return LocaleChoice(program_default, program_default, note)
    return LocaleChoice(program_default, program_default, None)
