"""What a log line must never carry, found by patterns of their own (not the redactor's): a full e-mail
address, a webhook signing secret, an API key, a working unsubscribe token."""

from __future__ import annotations

import re
from pathlib import Path

LEAKS = {
    # Two or more address characters right before the @: the redacted form keeps one, then "…".
    "e-mail address": re.compile(r"[A-Za-z0-9._+-]{2}(?:@|%40)[A-Za-z0-9-]+\.[A-Za-z]"),
    "webhook secret": re.compile(r"whsec_[A-Za-z0-9+/=]{6}"),
    "API key": re.compile(r"enc_[A-Za-z0-9_-]{6}"),
    "Stripe key": re.compile(r"[sr]k_(?:live|test)_[A-Za-z0-9]{6}"),
    # In any case, and with the slashes or the space percent-encoded (a URL inside a query string).
    "unsubscribe token": re.compile(r"(?i)v1(?:/|%2F)unsubscribe(?:/|%2F)[A-Za-z0-9_-]{6}"),
    "bearer token": re.compile(r"(?i)bearer(?:\s|%20|\+)+[A-Za-z0-9_-]{6}"),
}


def leaks(text: str) -> list[tuple[str, str]]:
    """(what leaked, the line) for every line of `text` that carries something of LEAKS."""
    found = []
    for line in text.splitlines():
        for what, pattern in LEAKS.items():
            if pattern.search(line):
                found.append((what, line))
    return found


def leaks_in(path: Path) -> tuple[int, list[tuple[str, str]]]:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return len(text.splitlines()), leaks(text)
