"""Properties of the pure webhook decisions: retry schedule, endpoint health, URL policy, signing."""

from __future__ import annotations

import base64
import ipaddress
import itertools
import random
import socket
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

import pytest
import yarl
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.webhooks.domain import (
    DISABLE_AFTER,
    FIRST_RETRY,
    LONGEST_WAIT,
    RETRY_WINDOW,
    connect_problem,
    health_after,
    is_public_address,
    new_secret,
    next_attempt,
    signature_header,
    signing_secrets,
    url_problem,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

_moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_offsets = st.timedeltas(min_value=-timedelta(days=1), max_value=RETRY_WINDOW + timedelta(days=1))
_attempts = st.integers(min_value=0, max_value=100)
_jitter = st.floats(min_value=0.0, max_value=1.0)


def _step(attempts: int) -> timedelta:
    """The documented exponential step: 30 s doubling per failed attempt, capped at LONGEST_WAIT."""
    step = FIRST_RETRY
    for _ in range(max(attempts - 1, 0)):
        step *= 2
        if step >= LONGEST_WAIT:
            return LONGEST_WAIT
    return min(step, LONGEST_WAIT)


# --- next_attempt -----------------------------------------------------------------------------------


@given(_attempts, _moments, _offsets, _jitter)
def test_next_attempt_stays_in_the_window_and_is_none_exactly_after_it(
    attempts: int, started: datetime, offset: timedelta, jitter: float
) -> None:
    """Never scheduled after the window's end; None exactly when `now` has reached the end."""
    now = started + offset
    deadline = started + RETRY_WINDOW
    at = next_attempt(attempts, started, now, jitter)
    assert (at is None) == (now >= deadline)
    if at is not None:
        assert now < at <= deadline


@given(_attempts, _moments, _jitter)
def test_next_attempt_at_the_deadline_is_dead(attempts: int, started: datetime, jitter: float) -> None:
    """At the window's end exactly (or any time after) the delivery is dead."""
    deadline = started + RETRY_WINDOW
    assert next_attempt(attempts, started, deadline, jitter) is None
    assert next_attempt(attempts, started, deadline + timedelta(microseconds=1), jitter) is None
    assert next_attempt(attempts, started, deadline - timedelta(microseconds=1), jitter) == deadline


@given(st.integers(min_value=0, max_value=60), st.integers(min_value=0, max_value=60), _jitter)
def test_wait_grows_with_attempts_and_is_capped(a: int, b: int, jitter: float) -> None:
    """For a fixed jitter (and no deadline clamp) the wait never shrinks as attempts grow, and never
    exceeds LONGEST_WAIT."""
    fewer, more = sorted((a, b))
    started = T0
    now = T0  # a whole window ahead: an 8 h wait is never clamped
    wait_fewer = next_attempt(fewer, started, now, jitter)
    wait_more = next_attempt(more, started, now, jitter)
    assert wait_fewer is not None and wait_more is not None
    assert wait_fewer - now <= wait_more - now <= LONGEST_WAIT


@given(_attempts, _jitter)
def test_jitter_gives_between_half_and_all_of_the_step(attempts: int, jitter: float) -> None:
    """ "Equal jitter": the wait is between half and all of the exponential step."""
    at = next_attempt(attempts, T0, T0, jitter)
    assert at is not None
    step = _step(attempts)
    assert step / 2 <= at - T0 <= step


@pytest.mark.parametrize(
    ("attempts", "jitter", "wait"),
    [
        (1, 1.0, timedelta(seconds=30)),
        (1, 0.0, timedelta(seconds=15)),
        (2, 1.0, timedelta(minutes=1)),
        (3, 1.0, timedelta(minutes=2)),
        (0, 1.0, timedelta(seconds=30)),
        (10, 1.0, timedelta(seconds=30 * 512)),
        (11, 1.0, LONGEST_WAIT),
        (200, 0.0, LONGEST_WAIT / 2),
    ],
)
def test_retry_schedule_examples(attempts: int, jitter: float, wait: timedelta) -> None:
    """Concrete steps: 30 s, 1 min, 2 min, …, capped at 8 h (jitter 0 halves them)."""
    assert next_attempt(attempts, T0, T0, jitter) == T0 + wait


@pytest.mark.parametrize("jitter", [-0.01, 1.01, -1.0, 2.0, float("inf"), float("-inf"), float("nan")])
def test_jitter_outside_unit_interval_is_refused(jitter: float) -> None:
    """Jitter outside [0, 1] (NaN included) is a programming error, not a schedule."""
    with pytest.raises(ValueError):
        next_attempt(1, T0, T0, jitter)


@given(_moments, st.randoms(use_true_random=False))
def test_a_delivery_failing_for_the_whole_window(start: datetime, rng: random.Random) -> None:
    """Failing every time from t0: a few dozen attempts at strictly increasing times, the last one at
    exactly t0 + RETRY_WINDOW, then dead."""
    times = [start]
    attempts = 1
    while True:
        at = next_attempt(attempts, start, times[-1], rng.random())
        if at is None:
            break
        assert at > times[-1]
        times.append(at)
        attempts += 1
        assert attempts <= 1000, "the schedule never ends"
    assert 10 <= len(times) <= 40
    assert times[-1] == start + RETRY_WINDOW
    assert all(a < b for a, b in itertools.pairwise(times))


# --- health_after -----------------------------------------------------------------------------------

_outcome = st.tuples(
    st.integers(min_value=0, max_value=10 * 24 * 60).map(lambda m: T0 + timedelta(minutes=m)),
    st.booleans(),
)
_outcomes = st.lists(_outcome, max_size=30)
_failing_since = st.none() | st.integers(min_value=0, max_value=10 * 24 * 60).map(
    lambda m: T0 + timedelta(minutes=m)
)


@given(_failing_since, _outcomes, st.randoms(use_true_random=False))
def test_health_ignores_the_order_of_outcomes(
    failing_since: datetime | None, outcomes: list[tuple[datetime, bool]], rng: random.Random
) -> None:
    """Outcomes in any order give the same health as in time order."""
    shuffled = list(outcomes)
    rng.shuffle(shuffled)
    assert health_after(failing_since, shuffled) == health_after(failing_since, sorted(outcomes))


@given(_failing_since, _outcomes)
def test_failing_since_is_none_iff_the_latest_outcome_succeeded(
    failing_since: datetime | None, outcomes: list[tuple[datetime, bool]]
) -> None:
    """The streak is over exactly when the latest outcome (a success sorts after a failure at the same
    instant) is a success; with no outcomes the old state stays."""
    health = health_after(failing_since, outcomes)
    if outcomes:
        latest_succeeded = max(outcomes)[1]
        assert (health.failing_since is None) == latest_succeeded
    else:
        assert health.failing_since == failing_since
    if health.failing_since is None:
        assert not health.disable


@given(_failing_since, st.lists(_outcome.map(lambda o: (o[0], False)), min_size=1, max_size=30))
def test_a_success_after_every_failure_ends_the_streak(
    failing_since: datetime | None, failures: list[tuple[datetime, bool]]
) -> None:
    """One success later than every failure: not failing, not disabled."""
    success = (max(at for at, _ in failures) + timedelta(seconds=1), True)
    health = health_after(failing_since, [*failures, success])
    assert health.failing_since is None
    assert health.disable is False


@given(_failing_since, st.lists(_outcome.map(lambda o: (o[0], False)), min_size=1, max_size=30))
def test_only_failures_disable_after_five_days(
    failing_since: datetime | None, failures: list[tuple[datetime, bool]]
) -> None:
    """Failures only: the streak starts at the known start (else the first failure) and the endpoint is
    to be disabled exactly when the latest failure is DISABLE_AFTER or more after that start."""
    health = health_after(failing_since, failures)
    start = failing_since or min(at for at, _ in failures)
    assert health.failing_since == start
    assert health.disable == (max(at for at, _ in failures) - start >= DISABLE_AFTER)


def test_health_examples() -> None:
    """Five days of failures disable; a second less does not; a success in between resets the streak."""
    day = timedelta(days=1)
    assert health_after(None, []).failing_since is None and not health_after(None, []).disable
    assert health_after(T0, []).failing_since == T0 and not health_after(T0, []).disable
    five = health_after(None, [(T0, False), (T0 + 5 * day, False)])
    assert five.failing_since == T0 and five.disable
    almost = health_after(None, [(T0, False), (T0 + 5 * day - timedelta(seconds=1), False)])
    assert almost.failing_since == T0 and not almost.disable
    carried = health_after(T0 - 3 * day, [(T0 + 2 * day, False)])
    assert carried.failing_since == T0 - 3 * day and carried.disable
    reset = health_after(None, [(T0, False), (T0 + day, True), (T0 + 5 * day, False)])
    assert reset.failing_since == T0 + 5 * day and not reset.disable
    tie = health_after(T0 - 6 * day, [(T0, False), (T0, True)])
    assert tie.failing_since is None and not tie.disable


# --- url_problem --------------------------------------------------------------------------------------

REJECTED_IN_PRODUCTION = [
    # Loopback or private networks written so a resolver or the network still gets there.
    "https://127.1/x",
    "https://2130706433/x",
    "https://0x7f000001/x",
    "https://localhost./x",
    "https://[64:ff9b::a00:1]/x",
    "https://[2002:a00:1::]/x",
    "https://[::127.0.0.1]/x",
    "https://hooks.example.com:0/x",
    "http://hooks.example.com/x",
    "http://93.184.216.34/x",
    "https://127.0.0.1/x",
    "https://127.0.0.2/x",
    "https://localhost/x",
    "https://LOCALHOST:8443/x",
    "https://[::1]/x",
    "https://10.0.0.1/x",
    "https://10.255.255.254/x",
    "https://172.16.0.1/x",
    "https://172.31.255.255/x",
    "https://192.168.1.10/x",
    "https://[fd00::1]/x",
    "https://[fe80::1]/x",
    "https://169.254.169.254/latest/meta-data",
    "https://0.0.0.0/x",
    "https://[::]/x",
    "https://[::ffff:10.0.0.1]/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://224.0.0.1/x",
    "https://printer.local/x",
    "https://db.internal/x",
    "https://app.localhost/x",
    "https://user:secret@hooks.example.com/x",
    "https://user@hooks.example.com/x",
    "https://hooks.example.com:99999/x",
    "https://hooks.example.com:abc/x",
    "https://hooks.example.com:-1/x",
    "ftp://hooks.example.com/x",
    "file:///etc/passwd",
    "gopher://hooks.example.com/x",
    "javascript:alert(1)",
    "hooks.example.com/x",
    "https:///x",
    "",
    "https://hooks.example.com/" + "a" * 2000,
]


@pytest.mark.parametrize("url", REJECTED_IN_PRODUCTION)
def test_production_rejects(url: str) -> None:
    """Plain http, this machine, private networks, credentials, bad ports, other schemes, huge URLs."""
    problem = url_problem(url, allow_local_http=False)
    assert isinstance(problem, str) and problem


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",
        "https://93.184.216.34/x",
        "https://hooks.example.com:8443/x?token=abc",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/x",
        "https://hooks.example.com/" + "a" * (2000 - len("https://hooks.example.com/")),
    ],
)
def test_production_accepts_public_https(url: str) -> None:
    """Public https URLs (names and public addresses) are fine, up to 2000 characters."""
    assert url_problem(url, allow_local_http=False) is None


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:9000/x", "https://127.0.0.1/x"]
)
def test_local_mode_admits_loopback(url: str) -> None:
    """With allow_local_http, http:// (and https://) on this machine's loopback is allowed."""
    assert url_problem(url, allow_local_http=True) is None
    assert url_problem(url, allow_local_http=False) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/x",
        "http://10.0.0.1/x",
        "https://10.0.0.1/x",
        "http://192.168.1.1:8080/x",
        "https://169.254.169.254/x",
        "http://user:pw@127.0.0.1:8080/x",
        "ftp://127.0.0.1/x",
    ],
)
def test_local_mode_still_rejects_the_rest(url: str) -> None:
    """Local mode only opens loopback: remote http and private networks stay refused."""
    assert url_problem(url, allow_local_http=True) is not None


_PRIVATE_NETWORKS: list[tuple[Literal[4, 6], str]] = [
    (4, "10.0.0.0/8"),
    (4, "172.16.0.0/12"),
    (4, "192.168.0.0/16"),
    (4, "127.0.0.0/8"),
    (4, "169.254.0.0/16"),
    (4, "100.64.0.0/10"),
    (4, "0.0.0.0/8"),
    (6, "fc00::/7"),
    (6, "fe80::/10"),
    (6, "fec0::/10"),
    (6, "64:ff9b:1::/48"),
    (6, "2001::/32"),
]
_private_networks = st.sampled_from(_PRIVATE_NETWORKS)


def _ipv6_forms(ip: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """The IPv6 addresses that lead to an IPv4 one: mapped, translated (RFC 2765), compatible, 6to4, NAT64."""
    n = int(ip)
    return [
        ipaddress.IPv6Address((0xFFFF << 32) | n),
        ipaddress.IPv6Address((0xFFFF << 48) | n),
        ipaddress.IPv6Address(n),
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80)),
        ipaddress.IPv6Address((0x64FF9B << 96) | n),
    ]


@given(st.data(), _private_networks, st.booleans())
def test_every_private_address_is_refused(
    data: st.DataObject, network: tuple[Literal[4, 6], str], allow_local_http: bool
) -> None:
    """Any address in a private, loopback or link-local range is refused over https (except the exact
    loopback names local mode admits), also written as any IPv6 address that leads to it; the worker
    refuses to connect to each of them too."""
    version, cidr = network
    ip = data.draw(st.ip_addresses(v=version, network=cidr))
    host = f"[{ip}]" if version == 6 else str(ip)
    if not (allow_local_http and str(ip) in {"127.0.0.1", "::1"}):
        assert url_problem(f"https://{host}/hook", allow_local_http) is not None
        assert connect_problem(str(ip), allow_local_http) is not None
    if isinstance(ip, ipaddress.IPv4Address):
        for form in _ipv6_forms(ip):
            if allow_local_http and str(form) == "::1":  # 0.0.0.1 written as IPv4-compatible
                continue
            assert url_problem(f"https://[{form}]/hook", allow_local_http) is not None, form
            assert connect_problem(str(form), allow_local_http) is not None, form


@given(
    st.sampled_from(["http", "https", "ftp", "ws"]),
    st.sampled_from(
        ["hooks.example.com", "93.184.216.34", "127.0.0.1", "localhost", "[::1]", "10.1.2.3", "a.local"]
    ),
    st.sampled_from(["", ":80", ":8080", ":443"]),
)
def test_local_mode_only_adds_urls(scheme: str, host: str, port: str) -> None:
    """Whatever production accepts, local mode accepts too (it only widens the policy)."""
    url = f"{scheme}://{host}{port}/x"
    if url_problem(url, allow_local_http=False) is None:
        assert url_problem(url, allow_local_http=True) is None


# --- SSRF: this machine and private networks, however the host is written ------------------------------

# The attack pass's findings: yarl (aiohttp's URL library) reads these as IP literals, and aiohttp skips
# the resolver for IP literals; the integration tests post them to the API too.
FINDINGS = [
    "https://127。0。0。1/",  # U+3002 ideographic full stop
    "https://10．0．0．1/",  # U+FF0E full-width full stop
    "https://169。254。169。254/latest/meta-data/",
    "https://127｡0｡0｡1/",  # U+FF61 half-width ideographic full stop
    "https://１２７.０.０.１/",  # full-width digits
    "https://[::ffff:0:7f00:1]/",  # IPv4-translated (RFC 2765)
]

# (URL, what the refusal says): each one leads to this machine, a private network or nowhere public.
SSRF_REFUSED = [
    (
        "https://127。0。0。1/",
        "IDNA form '127.0.0.1' is refused too: webhook URLs may not point at this machine",
    ),
    (
        "https://10．0．0．1/",
        "IDNA form '10.0.0.1' is refused too: webhook URLs may not point at 10.0.0.1, a private address",
    ),
    ("https://169。254。169。254/latest/meta-data/", "169.254.169.254, a link-local address"),
    ("https://127｡0｡0｡1/", "IDNA form '127.0.0.1' is refused too"),
    ("https://１２７.０.０.１/", "IDNA form '127.0.0.1' is refused too"),
    ("https://１０．０．０．１:8443/", "10.0.0.1, a private address"),
    ("https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", "IDNA form 'localhost' is refused too"),
    ("https://[::ffff:0:7f00:1]/", "an IPv6 form of 127.0.0.1, a loopback address (this machine)"),
    ("https://[::ffff:0:127.0.0.1]/", "an IPv6 form of 127.0.0.1, a loopback address"),
    ("https://[::ffff:0:a9fe:a9fe]/", "an IPv6 form of 169.254.169.254, a link-local address"),
    ("https://[::FFFF:7F00:1]/", "an IPv6 form of 127.0.0.1"),  # IPv4-mapped, upper case
    ("https://[::ffff:10.0.0.1]/", "an IPv6 form of 10.0.0.1, a private address"),
    ("https://[::127.0.0.1]/", "an IPv6 form of 127.0.0.1"),  # IPv4-compatible
    ("https://[::a00:1]/", "an IPv6 form of 10.0.0.1"),
    ("https://[2002:7f00:1::]/", "an IPv6 form of 127.0.0.1"),  # 6to4
    ("https://[2002:a9fe:a9fe::1]/", "an IPv6 form of 169.254.169.254"),
    ("https://[64:ff9b::7f00:1]/", "an IPv6 form of 127.0.0.1"),  # NAT64
    ("https://[64:ff9b::a9fe:a9fe]/", "an IPv6 form of 169.254.169.254"),
    ("https://[64:ff9b:1::a00:1]/", "a local-use NAT64 address"),
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "a Teredo tunnel address"),
    ("https://[fec0::1]/", "a site-local (private) address"),
    ("https://[fc00::1]/", "a unique-local (private) address"),
    ("https://[fd12:3456:789a::1]/", "a unique-local (private) address"),
    ("https://[fe80::1]/", "fe80::1, a link-local address"),
    ("https://[fe80::1%25eth0]/", "zone id"),
    ("https://[::1%25lo]/", "zone id"),
    ("https://[2606:4700::1111%25eth0]/", "zone id"),
    ("https://0.0.0.0/", "0.0.0.0, an unspecified address (this machine)"),
    ("https://0.1.2.3/", "an unspecified address (this machine)"),
    ("https://[::]/", "::, an unspecified address (this machine)"),
    ("https://[0:0:0:0:0:0:0:1]/", "::1, a loopback address (this machine)"),
    ("https://127.0.0.2/", "127.0.0.2, a loopback address"),
    ("https://100.64.0.1/", "a shared address (carrier-grade NAT)"),
    ("https://224.0.0.1/", "a multicast address"),
    ("https://[ff02::1]/", "a multicast address"),
    ("https://240.0.0.1/", "a reserved address"),
    ("https://255.255.255.255/", "a reserved address"),
    ("https://192.0.2.1/", "a reserved address"),
    ("https://[4000::1]/", "a reserved address"),
    # IPv4 written in the other notations resolvers accept: decimal, octal, hex, short, mixed.
    ("https://2130706433/", "four decimal numbers"),
    ("https://017700000001/", "four decimal numbers"),
    ("https://0177.0.0.1/", "four decimal numbers"),
    ("https://0x7f000001/", "four decimal numbers"),
    ("https://0x7f.0.0.1/", "four decimal numbers"),
    ("https://127.0x0.0.1/", "four decimal numbers"),
    ("https://127.1/", "four decimal numbers"),
    ("https://10.1/", "four decimal numbers"),
    ("https://0/", "four decimal numbers"),
    ("https://1.2.3.4.5/", "four decimal numbers"),
    ("https://hooks.example.123/", "four decimal numbers"),  # a numeric last label makes it an address
    # Trailing dots, upper case, and names that mean this machine or a local network whatever DNS says.
    ("https://127.0.0.1./", "may not point at this machine"),
    ("https://10.0.0.1./", "10.0.0.1, a private address"),
    ("https://localhost../", "may not point at this machine"),
    ("HTTPS://LOCALHOST/", "may not point at this machine"),
    ("https://localhost.localdomain/", "may not point at this machine"),
    ("https://LocalHost.LocalDomain./", "may not point at this machine"),
    ("https://ip6-localhost/", "may not point at this machine"),
    ("https://ip6-loopback/", "may not point at this machine"),
    ("https://app.localhost/", "may not point at this machine"),
    ("https://router.localdomain/", "private network"),
    ("https://nas.home.arpa/", "private network"),
    ("https://metadata.google.internal/computeMetadata/v1/", "private network"),
    ("https://metadata/computeMetadata/v1/", "a one-label name is looked up in the local network"),
    # Hosts that read differently to different parsers, or that no resolver should be handed.
    ("https://127%2E0%2E0%2E1/", "percent-encoding"),
    ("https://127.0.0.1%00.example.com/", "percent-encoding"),
    ("https://127.0.0.1\\@example.com/", "not a valid URL"),
    ("https://example.com\\@127.0.0.1/", "not a valid URL"),
    ("https://hooks example.com/", "letters, digits, hyphens and dots"),
    ("https://[v1.x]/", "is not an IPv6 address"),
    ("https://[127.0.0.1]/", "not a valid URL"),
]


# Local mode admits these: they are its plain loopback names.
_LOOPBACK_NAMES = {"https://127.0.0.1./", "https://localhost../", "HTTPS://LOCALHOST/"}


@pytest.mark.parametrize(("url", "says"), SSRF_REFUSED)
def test_every_way_of_writing_a_private_host_is_refused(url: str, says: str) -> None:
    """Each is refused in production with a message that says why, and in local mode too unless it is
    one of the plain loopback names local mode admits."""
    problem = url_problem(url, allow_local_http=False)
    assert problem is not None and says in problem, problem
    if url not in _LOOPBACK_NAMES:
        assert url_problem(url, allow_local_http=True) is not None


def test_the_findings_are_in_the_table() -> None:
    assert set(FINDINGS) <= {url for url, _ in SSRF_REFUSED}


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://93.184.215.14/",
        "https://[2606:4700::1111]/",
        "https://HOOKS.Example.COM/hook",
        "https://hooks.example.com./hook",  # a fully qualified name
        "https://my_hooks.example.com/",
        "https://[::ffff:93.184.215.14]/",  # IPv4-mapped, public
        "https://[64:ff9b::93.184.215.14]/",  # NAT64 to a public address
        "https://1.1.1.1:8443/hook",
    ],
)
def test_public_hosts_are_accepted(url: str) -> None:
    assert url_problem(url, allow_local_http=False) is None


@pytest.mark.parametrize(
    ("address", "allow_loopback", "problem"),
    [
        ("127.0.0.1", False, "127.0.0.1, a loopback address (this machine)"),
        ("127.0.0.1", True, None),
        ("::1", True, None),
        ("127.0.0.2", True, "127.0.0.2, a loopback address (this machine)"),
        (
            "::ffff:127.0.0.1",
            True,
            "::ffff:127.0.0.1, an IPv6 form of 127.0.0.1, a loopback address (this machine)",
        ),
        ("0.0.0.0", True, "0.0.0.0, an unspecified address (this machine)"),
        ("10.0.0.1", True, "10.0.0.1, a private address"),
        ("fe80::1%eth0", False, "fe80::1%eth0, a link-local address"),
        ("169.254.169.254", False, "169.254.169.254, a link-local address"),
        (
            "hooks.example.com",
            False,
            "hooks.example.com, not an IP address",
        ),  # only addresses are connected to
        ("93.184.215.14", False, None),
        ("2606:4700::1111", False, None),
    ],
)
def test_connect_problem(address: str, allow_loopback: bool, problem: str | None) -> None:
    """What the worker checks on every socket it opens (the address, as the connection will reach it)."""
    assert connect_problem(address, allow_loopback) == problem


_host_chars = st.sampled_from([*"0123456789abcdefx.:[]%-", "。", "．", "｡", "１", "０", "７", "ⓛ"])


@given(st.text(_host_chars, min_size=1, max_size=24), st.booleans())
def test_what_is_accepted_connects_only_to_public_addresses(host: str, allow_local_http: bool) -> None:
    """Whatever host a URL has, once accepted, the host the HTTP client connects to (yarl's reading) is a
    public address, or a name that no resolver reads as an IPv4 address in some other notation."""
    url = f"https://{host}/hook"
    if url_problem(url, allow_local_http) is not None:
        return
    target = (yarl.URL(url).raw_host or "").rstrip(".")
    try:
        ipaddress.ip_address(target)
    except ValueError:
        with pytest.raises(OSError):
            socket.inet_aton(target)  # what getaddrinfo tries first: 127.1, 0x7f.1, 2130706433, …
        return
    assert is_public_address(target) or (allow_local_http and target in {"127.0.0.1", "::1"})


# --- signing ------------------------------------------------------------------------------------------


def _headers(message_id: str, timestamp: datetime, signature: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def test_rotation_header_verifies_with_old_and_new_secret_only() -> None:
    """A header signed with [new, old] verifies with either secret, and not with a third one."""
    new, old, other = new_secret(), new_secret(), new_secret()
    body = '{"type":"points.earned","data":{"points":90}}'
    message_id = "msg_2f1c"
    now = datetime.now(UTC)
    header = signature_header([new, old], message_id, now, body)
    assert len(header.split(" ")) == 2 and all(part.startswith("v1,") for part in header.split(" "))
    headers = _headers(message_id, now, header)
    assert Webhook(new).verify(body, headers) == {"type": "points.earned", "data": {"points": 90}}
    assert Webhook(old).verify(body, headers) is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("90", "91"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, _headers("msg_other", now, header))


def test_single_secret_header_does_not_verify_with_the_previous_one() -> None:
    """After the overlap only the new secret signs: a receiver still on the old one is refused."""
    new, old = new_secret(), new_secret()
    body = "{}"
    now = datetime.now(UTC)
    headers = _headers("msg_1", now, signature_header([new], "msg_1", now, body))
    assert Webhook(new).verify(body, headers) == {}
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, headers)


def test_signing_secrets_overlap() -> None:
    """The previous secret signs too until `previous_until`, not at or after it, and never without one."""
    until = T0 + timedelta(days=2)
    assert signing_secrets("new", "old", until, T0) == ["new", "old"]
    assert signing_secrets("new", "old", until, until - timedelta(microseconds=1)) == ["new", "old"]
    assert signing_secrets("new", "old", until, until) == ["new"]
    assert signing_secrets("new", "old", until, until + timedelta(days=1)) == ["new"]
    assert signing_secrets("new", None, until, T0) == ["new"]
    assert signing_secrets("new", "old", None, T0) == ["new"]


@given(st.timedeltas(min_value=-timedelta(days=30), max_value=timedelta(days=30)))
def test_signing_secrets_property(offset: timedelta) -> None:
    """The current secret always comes first; the previous one is added exactly before `previous_until`."""
    keys = signing_secrets("cur", "prev", T0, T0 + offset)
    assert keys == (["cur", "prev"] if offset < timedelta(0) else ["cur"])


def test_new_secret_format() -> None:
    """`whsec_` + base64 of 32 random bytes, different every time, usable by a Standard Webhooks library."""
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
        Webhook(secret)


# --- hosts must be ASCII (IDNA) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "suggestion"),
    [
        ("https://bücher.example/hook", "https://xn--bcher-kva.example/hook"),
        ("https://BÜCHER.example:8443/h?q=1#f", "https://xn--bcher-kva.example:8443/h?q=1#f"),
        ("https://straße.de/", "https://xn--strae-oqa.de/"),  # IDNA 2008, as the HTTP client encodes it
        ("https://shop.例え.jp/hook", "https://shop.xn--r8jz45g.jp/hook"),
    ],
)
def test_a_non_ascii_host_is_refused_with_its_idna_form(url: str, suggestion: str) -> None:
    problem = url_problem(url, allow_local_http=False)
    assert problem is not None and problem.endswith(f"write its IDNA (punycode) form, {suggestion}")
    assert url_problem(suggestion, allow_local_http=False) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://127。0。0。1/hook",  # full stops that spell a loopback address
        "https://１０.0.0.1/hook",  # full-width digits
        "https://☃.net/",  # not a valid internationalised name
        "http://bücher.example/",  # its IDNA form would still need https
    ],
)
def test_any_non_ascii_host_is_refused(url: str) -> None:
    problem = url_problem(url, allow_local_http=True)
    assert problem is not None and "is not ASCII" in problem


@given(st.text(min_size=1, max_size=20).filter(lambda text: not text.isascii()))
def test_no_host_with_a_non_ascii_character_is_accepted(label: str) -> None:
    url = f"https://{label}.example/hook"
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = "ø"  # not even a URL: refused all the same
    assume(not host.isascii())  # the label may have put its non-ASCII part in the path or fragment
    assert url_problem(url, allow_local_http=True) is not None
