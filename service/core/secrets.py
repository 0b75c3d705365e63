"""Secrets at rest: values the service must read back in plain text (webhook signing secrets, later the
Stripe keys), encrypted with Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`).

Keys come from ENCORE_ENCRYPTION_KEYS (`Settings.secret_box()`): the first encrypts, every one decrypts,
so a new key can be put first while values sealed under the old one are still read; `encore secrets
rotate` then re-encrypts them (`reseal`) and the old key can go. A stored value is `fernet:<token>`: the
prefix names the scheme, so a value written before encryption (plain text) is told apart, and a later
scheme could sit beside this one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from service.core import db

PREFIX = "fernet:"
KEYS_VARIABLE = "ENCORE_ENCRYPTION_KEYS"
PLAINTEXT = "is stored in plain text: `encore migrate` encrypts it"


class EncryptionKeyError(ValueError):
    """The configured keys are unusable (a start-up error: the message names the variable, never a key)."""


class CannotOpen(ValueError):
    """A stored value no key opens, or one not sealed at all. The message says which, never the value."""


def new_key() -> str:
    """A new key for ENCORE_ENCRYPTION_KEYS (`encore secrets new-key`): 32 random bytes, url-safe base64."""
    return Fernet.generate_key().decode()


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


class SecretBox:
    """Seals and opens secrets kept in the database. `source` names where the keys came from, in errors."""

    def __init__(self, keys: Sequence[str], *, source: str = KEYS_VARIABLE) -> None:
        if not keys:
            raise EncryptionKeyError(f"{source}: no key given; `encore secrets new-key` makes one")
        fernets: list[Fernet] = []
        for n, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):  # binascii.Error is a ValueError
                # The key itself is never repeated: even a mistyped one is most of a secret.
                raise EncryptionKeyError(
                    f"{source}: the {_ordinal(n)} key (of {len(keys)}) is not a Fernet key, 32 bytes in "
                    "url-safe base64 (44 characters); `encore secrets new-key` makes one"
                ) from None
        self._first = fernets[0]
        self._all = MultiFernet(fernets)
        self.undecryptable = (
            f"cannot be decrypted: {source} lost the key that sealed it"
            if source == KEYS_VARIABLE
            else f"cannot be decrypted with the development key in {source}: another key sealed it"
        )

    @staticmethod
    def is_sealed(stored: str) -> bool:
        return stored.startswith(PREFIX)

    def seal(self, plaintext: str) -> str:
        """`plaintext` encrypted under the first key, as stored."""
        return PREFIX + self._first.encrypt(plaintext.encode()).decode()

    def open(self, stored: str) -> str:
        """The plaintext of a sealed value. A value in plain text is refused too: after `encore migrate`
        there is none, so one that turns up was written around this code and must not pass unnoticed."""
        try:
            return self._all.decrypt(self._token(stored)).decode()
        except InvalidToken:
            raise CannotOpen(self.undecryptable) from None

    def rotate(self, stored: str) -> str:
        """The value sealed under the first key: unchanged when it is already (so rotating is idempotent),
        else decrypted with whichever key opens it and encrypted again under the first."""
        token = self._token(stored)
        try:
            self._first.decrypt(token)
            return stored
        except InvalidToken:
            pass
        try:
            return PREFIX + self._all.rotate(token).decode()
        except InvalidToken:
            raise CannotOpen(self.undecryptable) from None

    def seal_plaintext(self, stored: str) -> str:
        """A value written before secrets were sealed, sealed; a sealed one as it is (`encore migrate`)."""
        return stored if self.is_sealed(stored) else self.seal(stored)

    def _token(self, stored: str) -> bytes:
        if not self.is_sealed(stored):
            raise CannotOpen(PLAINTEXT)
        return stored[len(PREFIX) :].encode()


Row = tuple[Any, tuple[str | None, ...]]  # a row's key and its sealed values (None: no value)


@dataclass(frozen=True, slots=True)
class SealedStore:
    """Where sealed values are kept, for `reseal` (the store's SQL stays in its repository).

    `lock(conn, after, limit, plaintext_only)`: up to `limit` rows with a key greater than `after` (None:
    from the first), in key order, locked FOR UPDATE; with `plaintext_only`, only rows holding a value
    not sealed yet. `write(conn, rows)`: store these rows' new values.
    """

    name: str  # what a row is, in messages: "webhook endpoint"
    columns: tuple[str, ...]  # what each of a row's values is, in messages
    lock: Callable[[db.Connection, Any, int, bool], Awaitable[list[Row]]]
    write: Callable[[db.Connection, list[Row]], Awaitable[None]]


@dataclass(slots=True)
class Resealed:
    store: str
    values: int = 0  # values looked at
    changed: int = 0
    failures: list[str] = field(default_factory=list)  # "webhook endpoint <id> (secret): cannot be ..."


async def reseal(
    store: SealedStore, change: Callable[[str], str], *, plaintext_only: bool = False, batch: int = 200
) -> Resealed:
    """Pass every value of `store` through `change` (`box.rotate`, `box.seal_plaintext`), in batches of
    `batch` rows, each in a transaction holding its rows' locks: safe while the API and the worker run
    (they read a value sealed under either key, and the API's own writes wait for the batch). A value
    `change` cannot open is left as it is and reported; the others go on."""
    result = Resealed(store.name)
    after: Any = None
    while True:
        async with db.transaction() as conn:
            rows = await store.lock(conn, after, batch, plaintext_only)
            changed: list[Row] = []
            for key, values in rows:
                new_values: list[str | None] = []
                for column, value in zip(store.columns, values, strict=True):
                    if value is None:
                        new_values.append(None)
                        continue
                    result.values += 1
                    try:
                        new_values.append(change(value))
                    except CannotOpen as exc:
                        result.failures.append(f"{store.name} {key} ({column}): {exc}")
                        new_values.append(value)
                new = tuple(new_values)
                if new != values:
                    result.changed += sum(a != b for a, b in zip(values, new, strict=True))
                    changed.append((key, new))
            if changed:
                await store.write(conn, changed)
        if len(rows) < batch:
            return result
        after = rows[-1][0]
