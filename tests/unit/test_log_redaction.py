"""`redact` on the forms a secret or token takes in a log value: after a word character or an encoded
separator, percent-encoded, in a path of any case or with its slashes encoded, in a key. Each case is
checked by what must be gone (the secret itself) and by the log scan's own patterns."""

from __future__ import annotations

from uuid import UUID

import pytest

from service.core.logging import _redact_event, _redacted, redact
from tests.support.logscan import leaks

SECRET = "whsec_" + "S3cr3t" * 6
KEY = "enc_" + "k3y" * 12
TOKEN = "MTIzLmFiYy5tYXJrZXRpbmc.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (f"key_{SECRET}", SECRET[6:], "key_whsec_…"),
        (f"token%3D{KEY}&next=1", KEY[4:], "token%3Denc_…&next=1"),
        (f"Authorization: Bearer%20{KEY}", KEY[4:], "Bearer%20"),
        (f"header=authorization%3DBearer%20{TOKEN}", TOKEN, "Bearer%20…"),
        (f"auth=Bearer+{TOKEN}", TOKEN, "Bearer+…"),
        (f"BEARER {TOKEN}", TOKEN, "BEARER …"),
        (f"scheme=bEaReR\t{TOKEN}", TOKEN, "bEaReR\t…"),
        (f"x-{KEY}", KEY[4:], "x-enc_…"),
        ("secret=whsec_abc%2Bdef%2Fghi%3D%3D", "def", "secret=whsec_…"),
        (f"path=/V1/UNSUBSCRIBE/{TOKEN}", TOKEN, "/V1/UNSUBSCRIBE/…"),
        (f"path=/v1/Unsubscribe/{TOKEN}?from=mail", TOKEN, "/v1/Unsubscribe/…?from=mail"),
        (f"next=%2Fv1%2Funsubscribe%2F{TOKEN}&x=1", TOKEN, "%2Fv1%2Funsubscribe%2F…&x=1"),
        (f"next=%2fV1%2fANSWER%2f{TOKEN}", TOKEN, "%2fV1%2fANSWER%2f…"),
        (f"https://encore.example/v1/unsubscribe/{TOKEN}", TOKEN, "/v1/unsubscribe/…"),
    ],
)
def test_a_secret_or_token_is_redacted_in_whatever_form_it_comes(text: str, secret: str, kept: str) -> None:
    redacted = redact(text)
    assert secret not in redacted and kept in redacted, redacted
    assert leaks(redacted) == [], redacted
    assert redact(redacted) == redacted  # stable: a redacted line redacts to itself


@pytest.mark.parametrize(
    "text",
    [
        "request",
        "GET",
        "/v1/customers/c-1/ledger",
        "/v1/rules/rule_1234/versions",
        "2026-12-01T20:00:24.874766Z",
        "program_id",
        "the answer is on /v1/ledger",
        "fine: b…@example.com /v1/unsubscribe/… whsec_… enc_… Bearer …",
    ],
)
def test_what_holds_no_secret_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_keys_are_redacted_as_values_are() -> None:
    event = {
        "event": "answers",
        SECRET: 1,
        "by_address": {"jane.doe@example.org": {f"/v1/unsubscribe/{TOKEN}": KEY}},
        "numbers": {1: "one", 2.5: None},
    }
    redacted = _redact_event(None, "info", event)
    printed = repr(redacted)
    for secret in (SECRET[6:], "jane.doe", TOKEN, KEY[4:]):
        assert secret not in printed, printed
    assert redacted["whsec_…"] == 1
    assert redacted["by_address"] == {"j…@example.org": {"/v1/unsubscribe/…": "enc_…"}}
    assert redacted["numbers"] == {1: "one", 2.5: None}  # numbers stay numbers
    # Other keys become text, as the renderer would print them (a tuple key is not made a list).
    uuid = UUID(int=7)
    [(first, one), (second, three)] = _redacted({uuid: 1, ("jane.doe@example.org", 2): 3}).items()
    assert (first, one, three) == (str(uuid), 1, 3)
    assert isinstance(second, str) and "jane.doe" not in second and "@example.org" in second
