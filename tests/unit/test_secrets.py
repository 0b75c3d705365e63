"""The box that keeps secrets encrypted at rest: round trips, several keys, rotation, clear failures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from service.core.secrets import PREFIX, CannotOpen, EncryptionKeyError, SecretBox, new_key
from service.settings import Settings

OLD, NEW = new_key(), new_key()


@given(st.text())
def test_what_is_sealed_opens_to_the_same_text(plaintext: str) -> None:
    box = SecretBox((OLD,))
    stored = box.seal(plaintext)
    assert stored.startswith(PREFIX) and SecretBox.is_sealed(stored)
    assert box.open(stored) == plaintext
    # Not readable in what is stored: the token after the prefix (its version and time bytes start with
    # a fixed `gAAAAA`, and short texts can occur in random base64 or in the prefix by chance).
    if len(plaintext) >= 16:
        assert plaintext not in stored[len(PREFIX) :]


def test_sealing_twice_gives_different_text() -> None:
    box = SecretBox((OLD,))
    assert box.seal("whsec_same") != box.seal("whsec_same")  # a fresh IV each time


def test_a_value_sealed_under_an_old_key_opens_while_the_key_is_listed_and_rotates_to_the_first() -> None:
    stored = SecretBox((OLD,)).seal("whsec_abc")
    both = SecretBox((NEW, OLD))
    assert both.open(stored) == "whsec_abc"

    rotated = both.rotate(stored)
    assert rotated != stored and rotated.startswith(PREFIX)
    assert SecretBox((NEW,)).open(rotated) == "whsec_abc"  # the new key alone opens it now
    with pytest.raises(CannotOpen):
        SecretBox((OLD,)).open(rotated)
    assert both.rotate(rotated) == rotated  # already under the first key: unchanged (idempotent)
    assert both.seal_plaintext(rotated) == rotated


def test_a_value_no_key_opens_says_so_without_the_value() -> None:
    stored = SecretBox((OLD,)).seal("whsec_abc")
    box = SecretBox((NEW,))
    with pytest.raises(CannotOpen) as opened:
        box.open(stored)
    assert str(opened.value) == "cannot be decrypted: ENCORE_ENCRYPTION_KEYS lost the key that sealed it"
    with pytest.raises(CannotOpen):
        box.rotate(stored)
    tampered = stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")
    with pytest.raises(CannotOpen):
        SecretBox((OLD,)).open(tampered)


def test_plaintext_is_refused_until_sealed() -> None:
    box = SecretBox((OLD,))
    with pytest.raises(CannotOpen, match="plain text"):
        box.open("whsec_legacy")
    with pytest.raises(CannotOpen, match="plain text"):
        box.rotate("whsec_legacy")
    sealed = box.seal_plaintext("whsec_legacy")
    assert box.open(sealed) == "whsec_legacy"


@pytest.mark.parametrize(
    "keys, ordinal",
    [
        (("not-a-key",), "1st key (of 1)"),
        ((new_key(), "c2hvcnQ="), "2nd key (of 2)"),  # base64, but 5 bytes
        ((new_key(), new_key(), new_key()[:-2] + "!!"), "3rd key (of 3)"),
        (("ключ" * 11,), "1st key (of 1)"),
    ],
)
def test_a_bad_key_is_a_clear_error_naming_the_variable_not_the_key(
    keys: tuple[str, ...], ordinal: str
) -> None:
    with pytest.raises(EncryptionKeyError) as error:
        SecretBox(keys)
    message = str(error.value)
    assert (
        message.startswith("ENCORE_ENCRYPTION_KEYS: the " + ordinal) and "encore secrets new-key" in message
    )
    assert not any(key in message for key in keys)


def test_keys_come_from_the_environment_as_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCORE_ENCRYPTION_KEYS", f" {NEW},{OLD}\n {OLD} ")
    assert Settings.from_env().encryption_keys == (NEW, OLD, OLD)
    monkeypatch.setenv("ENCORE_ENCRYPTION_KEYS", "")
    assert Settings.from_env().encryption_keys == ()


def test_without_keys_a_development_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with capture_logs() as logs:
        stored = settings.secret_box().seal("whsec_dev")
        again = settings.secret_box()  # the same key, read again; no second warning
    path = tmp_path / "data" / "encryption.key"
    key = path.read_text().strip()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert again.open(stored) == "whsec_dev"
    assert SecretBox((key,)).open(stored) == "whsec_dev"
    assert [log["event"] for log in logs] == ["development_encryption_key"]
    assert logs[0]["log_level"] == "warning" and key not in repr(logs)


def test_a_development_key_that_did_not_seal_a_value_says_where_it_is(tmp_path: Path) -> None:
    stored = SecretBox((OLD,)).seal("whsec_abc")
    with pytest.raises(CannotOpen, match=r"development key in .*encryption\.key"):
        Settings(data_dir=tmp_path).secret_box().open(stored)
