"""Pure decisions for outbound webhooks: URLs we may call, retry schedule, endpoint health, signing."""

from __future__ import annotations

import base64
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna
from standardwebhooks.webhooks import Webhook

RETRY_WINDOW = timedelta(days=3)  # a delivery is retried for this long, then dead-lettered
DISABLE_AFTER = timedelta(days=5)  # an endpoint failing this long without one success is disabled
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=8)
MAX_ROTATION_OVERLAP = timedelta(days=7)
SECRET_PREFIX = "whsec_"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
EVERY_EVENT = "*"  # an endpoint's event_types ["*"]: every event (the dispatch query knows it too)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), 6to4
    (2002:…) or NAT64 (64:ff9b::a.b.c.d); each can reach a private IPv4 network."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def url_problem(url: str, allow_local_http: bool) -> str | None:
    """Why this URL may not receive webhooks, or None when it may.

    Production: https only, and never an address inside a private network (the worker's resolver
    re-checks every resolved address at send time, so a DNS name can't point there later either).
    `allow_local_http` (tests, local development) also admits http:// on this machine's loopback.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")  # `localhost.` is localhost
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if port == 0:
        return "not a valid URL: port 0"
    if len(url) > 2000:
        return "URLs are limited to 2000 characters"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed; put them in a header-free path or query token"
    if not host:
        return "the URL needs a host"
    if not host.isascii():
        return _non_ascii_host(parts, host, allow_local_http)
    local = host in LOCAL_HOSTS
    if parts.scheme == "http" and not (local and allow_local_http):
        return "webhook URLs must use https" + (
            ""
            if not local
            else " (http://127.0.0.1 is allowed only when ENCORE_WEBHOOKS_ALLOW_LOCAL_HTTP is set)"
        )
    if parts.scheme not in ("http", "https"):
        return "webhook URLs must use https"
    if local:
        return None if allow_local_http else "webhook URLs may not point at this machine"
    if host.endswith((".local", ".internal", ".localhost")):
        return "webhook URLs may not point into a private network"
    if host.replace(".", "").isdigit() or host.lower().startswith("0x"):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return "write the IP address as four decimal numbers (a.b.c.d)"  # 127.1, 2130706433, 0x7f…
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a DNS name: checked again when it resolves
    return None if is_public_address(host) else "webhook URLs may not point into a private network"


def _non_ascii_host(parts: SplitResult, host: str, allow_local_http: bool) -> str:
    """Hosts are stored and called as written, so they must be ASCII: say which IDNA (punycode) form to
    write instead (IDNA 2008 with UTS 46 mapping, as browsers and the HTTP client encode it)."""
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        return f"the host {host!r} is not ASCII and not a valid internationalised domain name ({exc})"
    netloc = ascii_host if parts.port is None else f"{ascii_host}:{parts.port}"
    suggestion = urlunsplit(parts._replace(netloc=netloc))
    problem = url_problem(suggestion, allow_local_http)
    if problem is not None:  # e.g. full-width digits and stops that spell a private address
        return f"the host {host!r} is not ASCII, and its IDNA form {ascii_host!r} is refused too: {problem}"
    return f"the host {host!r} is not ASCII: write its IDNA (punycode) form, {suggestion}"


def next_attempt(attempts: int, window_started_at: datetime, now: datetime, jitter: float) -> datetime | None:
    """When to try again after `attempts` failed attempts, or None: the retry window is over (dead).

    Exponential (30 s, 1 min, 2 min, … capped at 8 h) with "equal jitter": the wait is between half
    and all of the exponential step, so receivers that failed together don't get retried together.
    The last attempt is made at the end of the window rather than dropped before it.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be in [0, 1]")
    deadline = window_started_at + RETRY_WINDOW
    if now >= deadline:
        return None
    step = min(FIRST_RETRY * (1 << min(max(attempts - 1, 0), 20)), LONGEST_WAIT)
    at = now + step * (0.5 + jitter / 2)
    return min(at, deadline)


@dataclass(frozen=True, slots=True)
class Health:
    failing_since: datetime | None  # the first failure since the last success
    disable: bool


def health_after(failing_since: datetime | None, outcomes: list[tuple[datetime, bool]]) -> Health:
    """An endpoint's health after attempts (time, succeeded) in any order: a success ends the failure
    streak; an endpoint whose streak has lasted DISABLE_AFTER is to be disabled."""
    last_failure: datetime | None = None
    for at, succeeded in sorted(outcomes):
        if succeeded:
            failing_since = None
        else:
            failing_since = failing_since or at
            last_failure = at
    disable = (
        failing_since is not None
        and last_failure is not None
        and last_failure - failing_since >= DISABLE_AFTER
    )
    return Health(failing_since, disable)


def signing_secrets(
    secret: str, previous: str | None, previous_until: datetime | None, now: datetime
) -> list[str]:
    """The secrets that sign now: the current one, and during a rotation's overlap the previous one."""
    keys = [secret]
    if previous and previous_until is not None and now < previous_until:
        keys.append(previous)
    return keys


def signature_header(keys: list[str], message_id: str, timestamp: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret, space separated (the Standard Webhooks format
    that lets a receiver with either the old or the new secret verify during a rotation)."""
    return " ".join(Webhook(key).sign(message_id, timestamp, body) for key in keys)
