"""How every report answers: JSON by default, CSV when the client's `Accept` prefers `text/csv`.

    return respond(request, report, report.rows, ("period", "segment", "responses"), "nps-2026-01-01-2026-03-31.csv")

The CSV holds `rows` (Structs or mappings), one header line with `columns`, each row's values under them
(RFC 4180: CRLF line ends, a field quoted when it holds a comma, a quote or a line break, quotes doubled),
UTF-8, offered as a download (`Content-Disposition: attachment; filename=...`). Values: null is an empty
field, booleans `true`/`false`, numbers and decimal strings as they are; a text starting like a formula
(`=`, `+`, `-`, `@`, tab, CR) gets a leading `'` so a spreadsheet shows it rather than runs it.
Both answers say `Vary: Accept`."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from litestar import Request, Response

CSV = "text/csv"
JSON = "application/json"
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_FILENAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def wants_csv(request: Request[Any, Any, Any]) -> bool:
    """The `Accept` header ranks `text/csv` above JSON (no header, `*/*`: JSON)."""
    return request.accept.best_match([JSON, CSV], default=JSON) == CSV


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA) and not _NUMBER.match(text):
        return "'" + text
    return text


def to_csv(rows: Iterable[Any], columns: Sequence[str]) -> str:
    """The CSV text: the header, then each row's `columns` (a Struct's fields by their JSON names)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        values: Mapping[str, Any] = row if isinstance(row, Mapping) else msgspec.to_builtins(row)
        writer.writerow([cell(values.get(column)) for column in columns])
    return out.getvalue()


def respond(
    request: Request[Any, Any, Any], body: Any, rows: Iterable[Any], columns: Sequence[str], filename: str
) -> Response[Any]:
    """`body` as JSON, or `rows` as CSV named `filename` (letters, digits, `.`, `_`, `-`) when asked."""
    if not _FILENAME.match(filename):
        raise ValueError(f"not a safe file name: {filename!r}")
    if wants_csv(request):
        return Response(
            to_csv(rows, columns).encode(),
            media_type=CSV,  # Litestar adds `; charset=utf-8` to a text/ type
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Vary": "Accept"},
        )
    return Response(msgspec.json.encode(body), media_type=JSON, headers={"Vary": "Accept"})
