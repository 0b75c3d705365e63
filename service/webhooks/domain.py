"""Pure decisions for outbound webhooks: URLs we may call, retry schedule, endpoint health, signing."""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna
import yarl
from standardwebhooks.webhooks import Webhook

RETRY_WINDOW = timedelta(days=3)  # a delivery is retried for this long, then dead-lettered
DISABLE_AFTER = timedelta(days=5)  # an endpoint failing this long without one success is disabled
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=8)
MAX_ROTATION_OVERLAP = timedelta(days=7)
SECRET_PREFIX = "whsec_"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Names of this machine whatever DNS says (Debian's /etc/hosts gives ::1 the ip6- ones), and suffixes that
# only a local network answers (RFC 6761, 6762 and 8375, and ICANN's .internal).
_THIS_MACHINE_NAMES = {"localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_PRIVATE_SUFFIXES = (".local", ".localdomain", ".internal", ".home.arpa")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")  # underscores: some real DNS names have them
EVERY_EVENT = "*"  # an endpoint's event_types ["*"]: every event (the dispatch query knows it too)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    return address_kind(address) is None


def connect_problem(address: str, allow_loopback: bool) -> str | None:
    """Why the worker may not connect to this IP address ("127.0.0.1, a loopback address (this machine)"),
    or None when it may. `allow_loopback` (tests, local development) admits 127.0.0.1 and ::1."""
    if allow_loopback and address in LOCAL_HOSTS:
        return None
    kind = address_kind(address)
    return None if kind is None else f"{address}, {kind}"


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated (RFC 2765)
_COMPATIBLE = ipaddress.ip_network("::/96")  # IPv4-compatible (deprecated by RFC 4291)
# Named here because `ipaddress` calls some of them global (and its lists change between Python versions);
# an IPv6 address in one of them is refused whatever IPv4 address it embeds.
_LOCAL_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("0.0.0.0/8"), "an unspecified address (this machine)"),  # 0.0.0.0 is localhost
    (ipaddress.ip_network("10.0.0.0/8"), "a private address"),
    (ipaddress.ip_network("172.16.0.0/12"), "a private address"),
    (ipaddress.ip_network("192.168.0.0/16"), "a private address"),
    (ipaddress.ip_network("100.64.0.0/10"), "a shared address (carrier-grade NAT)"),
    (ipaddress.ip_network("fc00::/7"), "a unique-local (private) address"),
    (ipaddress.ip_network("fec0::/10"), "a site-local (private) address"),  # deprecated, still routed
    (ipaddress.ip_network("64:ff9b:1::/48"), "a local-use NAT64 address"),  # RFC 8215: into the local network
    (ipaddress.ip_network("2001::/32"), "a Teredo tunnel address"),  # embeds an obfuscated IPv4 address
)


def address_kind(address: str) -> str | None:
    """What makes an IP address no place for webhooks ("a private address", …), or None when it is public.

    An IPv6 address that leads to an IPv4 one (mapped, translated, compatible, 6to4, NAT64) is judged by
    that IPv4 address. Anything that is not an IP address is refused too (so a caller fails closed).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone id picks an interface, not a kind
    except ValueError:
        return "not an IP address"
    lead = ""
    if isinstance(ip, ipaddress.IPv6Address) and not any(ip in net for net, _ in _LOCAL_NETWORKS):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip, lead = embedded, f"an IPv6 form of {embedded}, "
    kind = next((kind for net, kind in _LOCAL_NETWORKS if ip in net), None)
    if kind is None:
        kind = _ordinary_kind(ip)
    return None if kind is None else lead + kind


def _ordinary_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address (this machine)"
    if ip.is_loopback:
        return "a loopback address (this machine)"
    if ip.is_link_local:
        return "a link-local address"  # 169.254.169.254: cloud metadata services
    if ip.is_multicast:
        return "a multicast address"
    if not ip.is_global or ip.is_reserved:  # documentation, benchmarking, 240.0.0.0/4, unallocated IPv6, …
        return "a reserved address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to: mapped (::ffff:a.b.c.d), translated (::ffff:0:a.b.c.d),
    compatible (::a.b.c.d), 6to4 (2002:…) or NAT64 (64:ff9b::a.b.c.d); each can reach a private IPv4
    network."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _TRANSLATED or (ip in _COMPATIBLE and int(ip) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def url_problem(url: str, allow_local_http: bool) -> str | None:
    """Why this URL may not receive webhooks, or None when it may.

    Production: https only, and never an address inside a private network (the worker re-checks every
    address it connects to at send time, so a DNS name can't point there later either). The host is
    judged as the HTTP client (aiohttp, through yarl) reads it. `allow_local_http` (tests, local
    development) also admits http:// on this machine's loopback.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")  # `localhost.` is localhost
        port = parts.port  # raises on a port that is not a number or out of range
        client = yarl.URL(url)  # what aiohttp connects to
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
    client_host = (client.raw_host or "").rstrip(".")
    if not host.isascii():
        return _non_ascii_host(parts, host, client_host, allow_local_http)
    if "%" in host:
        if ":" in host:
            return "an IPv6 zone id (%…) names a network interface of this machine; leave it out"
        return "percent-encoding is not allowed in the host; write the host name plainly"
    if _canonical(client_host) != _canonical(host) or client.explicit_port != port:
        return f"not a valid URL: the HTTP client would read its host as {client_host!r}, not {host!r}"
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
    if "[" in parts.netloc:  # an IPv6 literal
        try:
            return _address_problem(ipaddress.IPv6Address(host))
        except ValueError:
            return f"not a valid URL: [{host}] is not an IPv6 address"
    if not _HOST_NAME.fullmatch(host):
        return f"the host {host!r} may only have letters, digits, hyphens and dots (a.b.c)"
    if host in _THIS_MACHINE_NAMES or host.endswith(".localhost"):
        return "webhook URLs may not point at this machine"
    if host.endswith(_PRIVATE_SUFFIXES):
        return "webhook URLs may not point into a private network"
    if _ends_in_a_number(host):  # an IPv4 address to resolvers and browsers, in whatever notation
        try:
            return _address_problem(ipaddress.IPv4Address(host))
        except ValueError:
            return "write the IP address as four decimal numbers (a.b.c.d)"  # 127.1, 2130706433, 0x7f…
    if "." not in host:
        return (
            "webhook URLs need a full domain name (hooks.example.com): a one-label name is looked up"
            " in the local network"
        )
    return None  # a DNS name: each address it resolves to is checked when the worker connects


def _address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    kind = address_kind(str(ip))
    return None if kind is None else f"webhook URLs may not point at {ip}, {kind}"


def _canonical(host: str) -> str:
    """One spelling per host: IPv6 addresses compressed (urlsplit keeps `::ffff:0:127.0.0.1`, yarl writes
    `::ffff:0:7f00:1`)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _ends_in_a_number(host: str) -> bool:
    """The WHATWG URL standard's test: a last label of digits, or 0x and hex digits, makes the host an IPv4
    address (so `1.0x7f.0.1` and `0177.0.0.1` are addresses, not names)."""
    last = host.rsplit(".", 1)[-1]
    return last.isdigit() or (last.startswith("0x") and all(c in string.hexdigits for c in last[2:]))


def _non_ascii_host(parts: SplitResult, host: str, client_host: str, allow_local_http: bool) -> str:
    """Hosts are stored and called as written, so they must be ASCII: say which IDNA (punycode) form to
    write instead (IDNA 2008 with UTS 46 mapping, as browsers and the HTTP client encode it)."""
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        return f"the host {host!r} is not ASCII and not a valid internationalised domain name ({exc})"
    # The HTTP client (yarl) maps the host itself, and would connect to its reading: both are judged, so
    # full-width digits and stops (127。0。0。1) that it turns into an IP literal are judged as that IP.
    for form in dict.fromkeys((ascii_host, client_host)):
        problem = url_problem(_with_host(parts, form), allow_local_http)
        if problem is not None:
            return f"the host {host!r} is not ASCII, and its IDNA form {form!r} is refused too: {problem}"
    return f"the host {host!r} is not ASCII: write its IDNA (punycode) form, {_with_host(parts, ascii_host)}"


def _with_host(parts: SplitResult, host: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=shown if parts.port is None else f"{shown}:{parts.port}"))


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
