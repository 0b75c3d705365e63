"""Locale tags, decided without I/O: which tags a customer may have (any locale CLDR knows, kept in BCP 47
form). Which templates a locale gets is messaging's (`service.messaging.locales`)."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError

# Tags Babel resolves by likely subtags although they name no language ("und" would become en-US).
_NO_LANGUAGE = frozenset({"und", "root"})


def bcp47(identifier: str) -> str:
    """Babel's identifier (`pt_BR`) as a BCP 47 tag (`pt-BR`)."""
    return identifier.replace("_", "-")


@lru_cache(maxsize=4096)
def parsed(tag: str) -> Locale | None:
    if tag.replace("-", "_").split("_", 1)[0].lower() in _NO_LANGUAGE:
        return None
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return None


def canonical(tag: str) -> str | None:
    """The tag in its canonical BCP 47 form (`pt_br` -> `pt-BR`, `iw` -> `he-IL`), or None when CLDR does
    not know it. Stable: canonical(canonical(t)) == canonical(t)."""
    found = parsed(tag)
    return None if found is None else bcp47(str(found))
