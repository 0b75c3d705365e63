"""`make bench`: the foundation benchmark, all phases in one run.

1. pgbench TPC-B (scale 10, 16 clients, prepared) on a fresh database: the database server's baseline.
2. hello: a bare Litestar JSON route (bench/hello_app.py) under uvicorn: the HTTP ceiling.
3. orders: `POST /v1/orders`, distinct orders of 5 lines over 2,000 customers, each with an Idempotency-Key.
4. status: `GET /v1/customers/{id}` of random customers that got orders in phase 3.
5. sweeps: `mature`, `verify`, `expire`, `verify` over BENCH_SWEEP_LOTS (default 1,000,000) lots generated
   in SQL on their own database (bench/sweeps.py); BENCH_SWEEP_LOTS=0 skips it.
6. webhooks: BENCH_WEBHOOK_EVENTS (default 100,000) outbox events delivered by `encore worker` to a local
   receiver (bench/receiver.py), one worker then two, each on a fresh database (bench/webhooks.py).
7. rules: orders with 50 active earning rules against the base rule alone (alternating), and a rule
   simulation over BENCH_SIMULATION_ORDERS (100,000) orders (bench/rules.py); BENCH_RULES=0 skips it.
8. tiers: orders with three tiers on against off (alternating), and the re-evaluation of
   BENCH_TIER_CUSTOMERS (1,000,000) customers generated in SQL on their own database (bench/tiers.py);
   BENCH_TIERS=0 skips it.
9. messaging: the send sweep's select + render of BENCH_MESSAGES (100,000) due messages in six locales, and
   SMTP delivery of BENCH_SMTP_MESSAGES (5,000) to aiosmtpd in its own process (bench/messaging.py);
   BENCH_MESSAGES=0 skips it.
10. previews: /healthz probed every 20 ms, idle and while ten hostile template previews (1 s of CPU each)
   run at once on the API server, after the status phase (bench/previews.py); BENCH_PREVIEWS=0 skips it.
11. rewards: redemptions on 16 connections with distinct customers (ratio to orders), one hot customer on
   16 connections (req/s, p99, nothing overdrawn) and code validations (ratio to hello), on the API server
   (bench/rewards.py); BENCH_REWARDS=0 skips it. Run alone, it measures hello and orders too.
12. stripe: BENCH_STRIPE_CHECKOUTS (2,000) signed checkout.session.completed events processed into orders by
   `encore worker` (line items from the tests' Stripe stub, run in this process; the API server gets
   ENCORE_STRIPE_API_BASE = the stub), as a ratio to orders, and the webhook endpoint's accept rate (verify
   and store) on 16 connections, as a ratio to hello (bench/stripe.py); BENCH_STRIPE=0 skips it. Run alone,
   it measures hello and orders too.
13. gifts: orders with 20 active surprise-gift rules against none (alternating), the gifts given per 1,000
   orders and each side's p99 (bench/gifts.py); BENCH_GIFTS=0 skips it.

The API runs as in production (`uvicorn --factory service.app:app_from_env`, no reload, no access log) on a
fresh database of the same PostgreSQL server as pgbench. Each HTTP phase keeps 16 connections busy for
BENCH_SECONDS (default 30) after a short unrecorded warm-up.

Database server: ENCORE_BENCH_DATABASE_URL, else ENCORE_DATABASE_URL, else PostgreSQL on 127.0.0.1:5432
(user postgres, database test), else the embedded server under .data/bench. The run creates
encore_bench_<tag>, encore_pgbench_<tag>, encore_sweeps_<tag> and encore_tiers_<tag> there and drops
them, failure or not.

Groups: `make bench ONLY=foundation` (or BENCH_ONLY=...) runs one group of phases alone; several are
comma-separated (`ONLY=foundation,rules`). foundation = pgbench, hello, orders, status (1-4); previews (10);
rules (7); tiers (8); rewards (11, with hello and orders); stripe (12, with hello and orders); sweeps (5);
messaging (9); webhooks (6); gifts (13). Unset: every group. A group's own skip variable (BENCH_RULES=0,
...) still skips it.

Environment: BENCH_SECONDS (30), BENCH_WARMUP (2), BENCH_CONCURRENCY (16), BENCH_WORKERS (uvicorn workers, 2),
BENCH_CLIENT (raw | aiohttp), BENCH_ENFORCE=1 to exit 1 when a target is missed. Results:
bench/results/foundation-<UTC time>.txt/.json and bench/results/latest.json; server logs in
bench/results/server-*.log.tmp (git-ignored).

Choices, measured on the 2-core machine (6 s phases, alternating, only runs with < 0.1 core of outside load):
- uvicorn --workers 2 beat --workers 1 on every phase: hello 9,600 vs 8,000 req/s, orders 416 vs 321,
  status 984 vs 847 (means of 3), though status p99 was higher with 2 (45-62 ms against 27-48 ms). One
  worker leaves a core to PostgreSQL and the client but its event loop saturates first.
- the "raw" client (HTTP/1.1 written on a uvloop transport, responses parsed by httptools) costs about a
  third of aiohttp's CPU per request (about 60 us against 200 us on hello), so it takes less CPU from the
  server being measured; BENCH_CLIENT=aiohttp cross-checks it.
The CPU line printed for each phase splits the cores between the server, PostgreSQL, this process and
"other" (the rest of the machine); a phase where "other" is high ran beside outside work and is noisy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import httptools
import msgspec
import uvloop
from yarl import URL

from bench import gifts, messaging, previews, rewards, rules, sweeps, tiers, webhooks
from bench import stripe as stripe_bench
from bench.load import PhaseResult, Request, run_phase

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"

PGBENCH_SCALE = 10
PGBENCH_THREADS = 2
CUSTOMERS = 2000
LINES_PER_ORDER = 5
SKUS = 200

TARGET_ORDERS_PER_PGBENCH = 0.5
TARGET_ORDERS_P99_MS = 50.0
TARGET_STATUS_PER_HELLO = 0.3
BUSY_MACHINE_CORES = 0.25  # background load above this makes a run noisy


GROUPS = (
    "foundation",
    "previews",
    "rules",
    "tiers",
    "rewards",
    "stripe",
    "sweeps",
    "messaging",
    "webhooks",
    "gifts",
)


def selected_groups(raw: str) -> frozenset[str]:
    """The groups `ONLY` names (every group when empty); an unknown name is an error, not a silent no-op."""
    names = {name.strip() for name in raw.split(",") if name.strip()}
    unknown = sorted(names - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown bench group(s) {', '.join(unknown)}: choose from {', '.join(GROUPS)}")
    return frozenset(names or GROUPS)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(default) if not raw else float(raw)


@dataclass(frozen=True, slots=True)
class Config:
    seconds: float
    warmup: float
    concurrency: int
    workers: int
    client: str
    enforce: bool
    groups: frozenset[str]

    def runs(self, group: str, skip_variable: str | None = None) -> bool:
        """Whether `group` is selected and its own skip variable (e.g. BENCH_RULES=0) does not skip it."""
        return group in self.groups and (skip_variable is None or bool(_env_number(skip_variable, 1)))

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            seconds=_env_number("BENCH_SECONDS", 30),
            warmup=_env_number("BENCH_WARMUP", 2),
            concurrency=int(_env_number("BENCH_CONCURRENCY", 16)),
            # 2 measured faster than 1 on the 2-core machine (see the module docstring).
            workers=int(_env_number("BENCH_WORKERS", 2)),
            client=os.environ.get("BENCH_CLIENT", "raw").strip() or "raw",
            enforce=os.environ.get("BENCH_ENFORCE", "") not in ("", "0"),
            groups=selected_groups(os.environ.get("BENCH_ONLY", "")),
        )


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def venv_bin(name: str) -> str:
    for directory in (Path(sys.executable).parent, ROOT / ".venv" / "bin"):
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


# --- the database server ---------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def resolve_server() -> tuple[str, str]:
    """(server URL, where it came from)."""
    for var in ("ENCORE_BENCH_DATABASE_URL", "ENCORE_DATABASE_URL"):
        if os.environ.get(var):
            return os.environ[var], var
    pg_isready = shutil.which("pg_isready")
    if pg_isready is not None:
        ready = subprocess.run(
            [pg_isready, "-q", "-h", "127.0.0.1", "-p", "5432"], check=False
        ).returncode == 0 and run_async(lambda: _answers(LOCAL_URL))
    else:
        ready = run_async(lambda: _answers(LOCAL_URL))
    if ready:
        return LOCAL_URL, "127.0.0.1:5432"
    from service.core import db  # only now: it imports the service

    return db.start_embedded(ROOT / ".data" / "bench"), "embedded (.data/bench)"


async def server_info(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        info: dict[str, Any] = {"version": await conn.fetchval("SELECT version()")}
        for name in ("max_connections", "shared_buffers", "synchronous_commit", "fsync", "wal_level"):
            info[name] = await conn.fetchval(f"SHOW {name}")
        return info
    finally:
        await conn.close()


async def create_database(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --- CPU accounting from /proc (Linux): who used the 2 cores ------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    pgrp: int
    cpu: float  # user + system seconds


def _processes() -> list[ProcStat]:
    out: list[ProcStat] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICK
        out.append(ProcStat(int(entry.name), int(fields[1]), int(fields[2]), cpu))
    return out


def _machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (0 when /proc/stat is not there)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    ticks = [int(value) for value in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def _parent_postgres(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        parent = int(raw[raw.rindex(")") + 2 :].split()[1])
        comm = Path(f"/proc/{parent}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return parent if comm.startswith("postgres") else None


async def postmaster_pid(url: str) -> int | None:
    """The local postmaster of the server at url (our backend's parent), or None if it is not local."""
    conn = await asyncpg.connect(url)
    try:
        backend: int = await conn.fetchval("SELECT pg_backend_pid()")
        return await asyncio.to_thread(_parent_postgres, backend)  # while the backend is alive
    finally:
        await conn.close()


def background_load(seconds: float = 2.0) -> float:
    """Cores busy on this machine while nothing of the benchmark runs."""
    before = _machine_busy()
    time.sleep(seconds)
    return round((_machine_busy() - before) / seconds, 2)


class CpuMeter:
    """Average cores used by the HTTP server, the PostgreSQL server, this process and the rest.

    Processes are sampled every 0.5 s, so the CPU of one that exits before stop() (a pgbench backend)
    still counts up to its last sample.
    """

    def __init__(self, postmaster: int | None, server_pgrp: int | None = None) -> None:
        self.groups: dict[str, Callable[[ProcStat], bool]] = {}
        if postmaster is not None:
            self.groups["postgres"] = lambda p: p.pid == postmaster or p.ppid == postmaster
        if server_pgrp is not None:
            self.groups["server"] = lambda p: p.pgrp == server_pgrp
        self.baseline: dict[int, float] = {}
        self.latest: dict[str, dict[int, float]] = {name: {} for name in self.groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)

    def _self_cpu(self) -> tuple[float, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime

    def _sample(self, first: bool = False) -> None:
        for stat in _processes():
            for name, belongs in self.groups.items():
                if belongs(stat):
                    if first:
                        self.baseline[stat.pid] = stat.cpu
                    self.latest[name][stat.pid] = stat.cpu

    def _sample_loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def start(self) -> None:
        self._sample(first=True)
        self.own0, self.children0 = self._self_cpu()
        self.machine0 = _machine_busy()
        self.started = time.perf_counter()
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """Cores used on average since start() (1.0 = one core busy the whole time)."""
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.perf_counter() - self.started
        own, children = self._self_cpu()
        used = {
            name: sum(cpu - self.baseline.get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in self.latest.items()
        }
        used["client"] = own - self.own0
        if children - self.children0 > 0:
            used["subprocesses"] = children - self.children0  # waited-for children: pgbench
        machine = _machine_busy() - self.machine0
        used["other"] = max(0.0, machine - sum(used.values()))
        used["machine"] = machine
        return {key: round(value / wall, 2) for key, value in used.items()}


# --- pgbench -----------------------------------------------------------------------------------------


def measure_pgbench(
    url: str, cfg: Config, cpu_out: dict[str, dict[str, float]], postmaster: int | None
) -> PhaseResult | None:
    exe = shutil.which("pgbench") or ("/usr/bin/pgbench" if Path("/usr/bin/pgbench").exists() else None)
    if exe is None:
        print("pgbench not found (Debian: postgresql-client): the baseline could not be measured")
        return None
    print(f"pgbench: initialising scale {PGBENCH_SCALE} ...", flush=True)
    init = subprocess.run([exe, "-i", "-q", "-s", str(PGBENCH_SCALE), url], capture_output=True, text=True)
    if init.returncode != 0:
        print(
            f"pgbench -i failed (exit {init.returncode}): the baseline could not be measured\n{init.stderr}"
        )
        return None
    seconds = max(1, round(cfg.seconds))
    print(f"pgbench: TPC-B, {cfg.concurrency} clients, {seconds} s ...", flush=True)
    meter = CpuMeter(postmaster)
    with tempfile.TemporaryDirectory(prefix="encore-pgbench-") as tmp:
        prefix = str(Path(tmp) / "tx")
        meter.start()
        done = subprocess.run(
            [
                exe,
                "-c",
                str(cfg.concurrency),
                "-j",
                str(PGBENCH_THREADS),
                "-T",
                str(seconds),
                "-M",
                "prepared",
                "-l",
                f"--log-prefix={prefix}",
                url,
            ],
            capture_output=True,
            text=True,
        )
        cpu = meter.stop()
        cpu = {"pgbench": cpu.pop("subprocesses", 0.0), **cpu}
        cpu.pop("client", None)
        cpu_out["pgbench tps"] = cpu
        latencies: list[float] = []
        failed = 0
        for log in Path(tmp).glob("tx*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    latencies.append(int(parts[2]) / 1000)
                elif len(parts) >= 3:
                    failed += 1
    if done.returncode != 0:
        print(f"pgbench failed (exit {done.returncode}): the baseline could not be measured\n{done.stderr}")
        return None
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    result = PhaseResult("pgbench tps", seconds=float(seconds), ok=len(latencies), errors=failed)
    result.latencies_ms = latencies
    result.statuses["ok"] = len(latencies)
    if failed:
        result.statuses["failed"] = failed
    result.rps_override = float(match.group(1)) if match else len(latencies) / seconds
    result.notes.append(f"cores used: {cpu}")
    result.notes.extend(line for line in done.stdout.splitlines() if line.strip())
    return result


# --- HTTP servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(slots=True)
class HttpServer:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


def start_uvicorn(name: str, app_args: list[str], env: dict[str, str], workers: int) -> HttpServer:
    port = free_port()
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS / f"server-{name}.log.tmp"
    command = [
        venv_bin("uvicorn"),
        *app_args,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = HttpServer(name, proc, port, log_path)
    deadline = time.monotonic() + 60
    healthy = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(server.log_tail())
            raise RuntimeError(f"{name} server exited with {proc.returncode} while starting:\n{tail}")
        try:
            with urllib.request.urlopen(f"{server.base}/healthz", timeout=2) as response:
                healthy = healthy + 1 if response.status == 200 else 0
        except (urllib.error.URLError, OSError):
            healthy = 0
        if healthy >= 2 * workers:  # give every worker a chance to be up
            return server
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"{name} server did not answer GET /healthz with 200 within 60 s")


def stop_server(server: HttpServer) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the server's own session: it and its workers
            proc.wait(timeout=10)


def encore_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([venv_bin("encore"), *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"encore {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr}")
    return done.stdout


# --- request factories -------------------------------------------------------------------------------


class Orders:
    """Distinct orders of LINES_PER_ORDER lines (unique SKUs) for random customers, each with its own key."""

    def __init__(self, base: str, api_key: str, run_tag: str) -> None:
        self.url = URL(f"{base}/v1/orders")
        self.auth = f"Bearer {api_key}"
        self.run_tag = run_tag
        self.seq = 0
        self.rng = random.Random(run_tag)

    def __call__(self, _worker: int, customer: str | None = None) -> Request:
        self.seq += 1
        rng = self.rng
        if customer is None:
            customer = f"c-{rng.randrange(CUSTOMERS)}"
        lines: list[dict[str, Any]] = [
            {
                "sku": f"SKU-{sku}",
                "quantity": rng.randint(1, 3),
                "unit_amount": rng.randrange(100, 10_000),
                "name": f"Product {sku}",
                "category": f"cat-{sku % 10}",
            }
            for sku in rng.sample(range(SKUS), LINES_PER_ORDER)
        ]
        total = sum(line["quantity"] * line["unit_amount"] for line in lines)
        body = {
            "external_id": f"o-{self.run_tag}-{self.seq}",
            "customer": {"external_id": customer},
            "currency": "EUR",
            "placed_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "lines": lines,
            "discount_amount": 0,
            "shipping_amount": 0,
            "total_amount": total,
        }
        headers = {
            "Authorization": self.auth,
            "Content-Type": "application/json",
            "Idempotency-Key": f"bench-{self.run_tag}-{self.seq}",
        }
        return Request("POST", self.url, headers, msgspec.json.encode(body), tag=customer)


class Statuses:
    def __init__(self, base: str, api_key: str, customers: list[str], seed: str) -> None:
        self.urls = [URL(f"{base}/v1/customers/{customer}") for customer in customers]
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.rng = random.Random(seed)

    def __call__(self, _worker: int) -> Request:
        return Request("GET", self.rng.choice(self.urls), self.headers)


def hello_request(base: str) -> Callable[[int], Request]:
    url = URL(f"{base}/hello")
    headers: dict[str, str] = {}
    return lambda _worker: Request("GET", url, headers)


async def seed_customers(orders: Orders, count: int) -> tuple[set[str], list[str]]:
    """One order each for `count` customers, 16 at a time; (customers with an order, error lines)."""
    seeded: set[str] = set()
    problems: list[str] = []
    semaphore = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:

        async def one(customer: str) -> None:
            request = orders(0, customer)
            async with (
                semaphore,
                session.post(request.url, headers=request.headers, data=request.body) as response,
            ):
                body = await response.read()
                if response.status == 201:
                    seeded.add(customer)
                elif len(problems) < 5:
                    problems.append(f"{response.status}: {body[:500].decode(errors='replace')}")

        await asyncio.gather(*(one(f"c-{i}") for i in range(count)))
    return seeded, problems


# --- the run -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    cfg: Config
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    phases: dict[str, PhaseResult | None] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    server_logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger_verify: dict[str, Any] | None = None
    error: str | None = None
    postmaster: int | None = None  # the local PostgreSQL's postmaster, for CPU accounting
    sweeps: dict[str, Any] | None = None  # bench.sweeps: mature/expire/verify over many lots
    webhooks: dict[str, Any] | None = None  # bench.webhooks: outbox → receiver, one worker vs two
    rules: dict[str, Any] | None = None  # bench.rules: earn with 50 rules vs base, simulation time
    tiers_earn: dict[str, Any] | None = None  # bench.tiers: earn with tiers on vs off
    tiers_reevaluation: dict[str, Any] | None = None  # bench.tiers: re-evaluation of a million customers
    messaging: dict[str, Any] | None = None  # bench.messaging: render sweep and SMTP delivery
    previews: dict[str, Any] | None = None  # bench.previews: /healthz while hostile previews run
    rewards: dict[str, Any] | None = None  # bench.rewards: redemptions, a hot customer, code validations
    stripe: dict[str, Any] | None = None  # bench.stripe: checkouts into orders, webhook accepts
    gifts: dict[str, Any] | None = None  # bench.gifts: earn with 20 gift rules vs none, gifts per 1,000
    stripe_stub: Any = None  # bench.stripe's Stripe stub (the API server's ENCORE_STRIPE_API_BASE)

    def http_phase(
        self,
        name: str,
        make: Callable[[int], Request],
        server: HttpServer,
        on_ok: Callable[[Any], None] | None = None,
    ) -> PhaseResult:
        cfg = self.cfg
        print(
            f"{name}: {cfg.concurrency} connections, {cfg.warmup:g} s warm-up + {cfg.seconds:g} s ...",
            flush=True,
        )
        meter = CpuMeter(self.postmaster, server_pgrp=server.proc.pid)
        meter.start()
        result = run_async(
            lambda: run_phase(
                name,
                make,
                concurrency=cfg.concurrency,
                seconds=cfg.seconds,
                warmup=cfg.warmup,
                on_ok=on_ok,
                client=cfg.client,
            )
        )
        cpu = meter.stop()
        self.cpu[name] = cpu
        result.notes.append(f"cores used: {cpu}")
        self.phases[name] = result
        if result.errors:
            print(f"  {result.errors} errors: {dict(result.statuses)}")
            for sample in result.error_samples:
                print(f"    {sample['status']} {sample['request']}: {sample['body'][:300]}")
        return result

    def ratios(self) -> dict[str, dict[str, Any]]:
        def rps(name: str) -> float | None:
            phase = self.phases.get(name)
            return phase.rps if phase is not None and phase.ok else None

        def ratio(a: str, b: str) -> float | None:
            top, bottom = rps(a), rps(b)
            return None if top is None or bottom is None or bottom == 0 else round(top / bottom, 3)

        orders = self.phases.get("orders")
        p99 = orders.percentile(99) if orders is not None else None
        out: dict[str, dict[str, Any]] = {}
        for key, value, target, higher in (
            ("orders_per_pgbench", ratio("orders", "pgbench tps"), TARGET_ORDERS_PER_PGBENCH, True),
            ("orders_p99_ms", None if p99 is None else round(p99, 2), TARGET_ORDERS_P99_MS, False),
            ("status_per_hello", ratio("status", "hello"), TARGET_STATUS_PER_HELLO, True),
        ):
            met = None if value is None else (value >= target if higher else value <= target)
            out[key] = {"value": value, "target": target, "met": met}
        if self.webhooks is not None:
            out.update({f"webhooks_{k}": v for k, v in self.webhooks["ratios"].items()})
        if self.rules is not None:
            out.update({f"rules_{k}": v for k, v in self.rules["ratios"].items()})
        if self.tiers_earn is not None:
            out["tiers_on_per_off"] = self.tiers_earn["ratio"]
        if self.tiers_reevaluation is not None:
            out["tiers_daily_reevaluation_seconds"] = self.tiers_reevaluation["ratio"]
        if self.rewards is not None:
            out.update({f"rewards_{k}": v for k, v in self.rewards["ratios"].items()})
        if self.stripe is not None:
            out.update({f"stripe_{k}": v for k, v in self.stripe["ratios"].items()})
        if self.gifts is not None:
            out.update({f"gifts_{k}": v for k, v in self.gifts["ratios"].items()})
        if self.previews is not None:
            busy = self.previews["busy"]["max_ms"]
            out["healthz_max_ms_during_hostile_previews"] = {
                "value": busy,
                "idle_max_ms": self.previews["idle"]["max_ms"],
                "target": previews.TARGET_MAX_MS,
                "met": self.previews["met"],
            }
        return out

    def table(self) -> str:
        cfg = self.cfg
        env = self.environment
        pg = env.get("postgres", {})
        lines = [
            f"Encore foundation benchmark, {self.started_at:%Y-%m-%d %H:%M:%S} UTC",
            f"machine: {env.get('cpus')} CPUs, Python {env.get('python')}, {env.get('platform')}",
            f"postgres: {pg.get('source')} ({str(pg.get('version', '?')).split(' on ')[0]}), "
            f"synchronous_commit={pg.get('synchronous_commit')}, shared_buffers={pg.get('shared_buffers')}",
            f"server: uvicorn --workers {cfg.workers} (uvloop, httptools, no access log); "
            f"client: {env.get('client')}",
            f"{cfg.concurrency} connections, {cfg.seconds:g} s per phase after {cfg.warmup:g} s warm-up; "
            f"pgbench -s {PGBENCH_SCALE} -c {cfg.concurrency} -j {PGBENCH_THREADS} -M prepared",
        ]
        background = env.get("background_cores_before_run")
        if background is not None and background > BUSY_MACHINE_CORES:
            lines.append(
                f"WARNING: {background:g} cores were busy with other work just before the run: "
                "the figures are noisy (see 'other' below)"
            )
        lines += [
            "",
            f"{'phase':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ok':>8} {'errors':>7}",
        ]
        for name in ("pgbench tps", "hello", "orders", "status"):
            phase = self.phases.get(name)
            if phase is None:
                lines.append(f"{name:<12} {'n/a':>9} {'n/a':>8} {'n/a':>8} {'-':>8} {'-':>7}")
                continue
            p50, p99 = phase.percentile(50), phase.percentile(99)
            lines.append(
                f"{name:<12} {phase.rps:>9.1f} {_ms(p50):>8} {_ms(p99):>8} {phase.ok:>8} {phase.errors:>7}"
            )
        r = self.ratios()

        def show(entry: dict[str, Any], op: str, unit: str = "") -> str:
            value = "n/a" if entry["value"] is None else f"{entry['value']:g}{unit}"
            verdict = {True: "met", False: "MISSED", None: "not measured"}[entry["met"]]
            return f"{value} (target {op} {entry['target']:g}{unit}: {verdict})"

        lines.append("")
        lines.append(
            f"ratio orders/pgbench = {show(r['orders_per_pgbench'], '>=')}, "
            f"orders p99 = {show(r['orders_p99_ms'], '<=', ' ms')}"
        )
        lines.append(f"ratio status/hello = {show(r['status_per_hello'], '>=')}")
        for name, cpu in self.cpu.items():
            lines.append(f"cores used during {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
        noisy = [name for name, cpu in self.cpu.items() if cpu.get("other", 0.0) > BUSY_MACHINE_CORES]
        if noisy:
            lines.append(
                f"WARNING: outside work used > {BUSY_MACHINE_CORES:g} cores during {', '.join(noisy)}: "
                "those figures are low"
            )
        for name, phase in self.phases.items():
            if phase is not None and phase.errors:
                lines.append(f"{name} errors: {dict(phase.statuses)}")
                lines.extend(
                    f"  {s['status']} {s['request']}: {s['body'][:300]}" for s in phase.error_samples
                )
        for name, info in self.server_logs.items():
            if info["problem_lines"]:
                lines.append(
                    f"{name} server log has {info['problem_lines']} error/traceback lines: {info['path']}"
                )
        if self.ledger_verify is not None:
            lines.append(f"ledger verify after the run: {self.ledger_verify['summary']}")
        if self.sweeps is not None:
            lines.append("")
            lines.append(sweeps.format_results(self.sweeps))
        if self.webhooks is not None:
            lines.append("")
            lines.append(webhooks.format_results(self.webhooks))
        if self.rules is not None:
            lines.append("")
            lines.append(rules.format_results(self.rules))
        if self.tiers_earn is not None or self.tiers_reevaluation is not None:
            lines.append("")
            lines.append(tiers.format_results(self.tiers_earn, self.tiers_reevaluation))
        if self.rewards is not None:
            lines.append("")
            lines.append(rewards.format_results(self.rewards))
        if self.stripe is not None:
            lines.append("")
            lines.append(stripe_bench.format_results(self.stripe))
        if self.gifts is not None:
            lines.append("")
            lines.append(gifts.format_results(self.gifts))
        if self.messaging is not None:
            lines.append("")
            lines.append(messaging.format_results(self.messaging))
        if self.previews is not None:
            lines.append("")
            lines.append(previews.format_results(self.previews))
        if self.error:
            lines.append(f"RUN FAILED: {self.error}")
        return "\n".join(lines)

    def document(self, table: str) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "benchmark": "foundation",
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "config": {
                "seconds": cfg.seconds,
                "warmup_seconds": cfg.warmup,
                "concurrency": cfg.concurrency,
                "uvicorn_workers": cfg.workers,
                "client": cfg.client,
                "customers": CUSTOMERS,
                "lines_per_order": LINES_PER_ORDER,
                "pgbench": {
                    "scale": PGBENCH_SCALE,
                    "clients": cfg.concurrency,
                    "threads": PGBENCH_THREADS,
                    "mode": "prepared",
                },
            },
            "environment": self.environment,
            "phases": {name: None if p is None else p.summary() for name, p in self.phases.items()},
            "ratios": self.ratios(),
            "cores_used": self.cpu,
            "server_logs": self.server_logs,
            "ledger_verify": self.ledger_verify,
            "sweeps": self.sweeps,
            "webhooks": self.webhooks,
            "rules": self.rules,
            "tiers": {"earn": self.tiers_earn, "reevaluation": self.tiers_reevaluation},
            "messaging": self.messaging,
            "previews": self.previews,
            "rewards": self.rewards,
            "stripe": self.stripe,
            "gifts": self.gifts,
            "error": self.error,
            "table": table,
        }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _log_info(server: HttpServer) -> dict[str, Any]:
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        text = ""
    lines = text.splitlines()
    problems = [line for line in lines if re.search(r"traceback|error|exception|critical", line, re.I)]
    return {
        "path": str(server.log_path.relative_to(ROOT)),
        "lines": len(lines),
        "problem_lines": len(problems),
        "first_problems": problems[:10],
        "tail": lines[-20:],
    }


def execute(run: Run, server_url: str, tag: str, databases: list[str], servers: list[HttpServer]) -> None:
    cfg = run.cfg
    base_env = {k: v for k, v in os.environ.items() if k != "ENCORE_BENCH_DATABASE_URL"}

    if cfg.runs("foundation"):
        # 1. pgbench, on its own database, dropped as soon as it is measured.
        pgbench_db = f"encore_pgbench_{tag}"
        run_async(lambda: create_database(server_url, pgbench_db))
        databases.append(pgbench_db)
        run.phases["pgbench tps"] = measure_pgbench(
            with_database(server_url, pgbench_db), cfg, run.cpu, run.postmaster
        )
        run_async(lambda: drop_database(server_url, pgbench_db))
        databases.remove(pgbench_db)

    if cfg.runs("foundation") or cfg.runs("rewards", "BENCH_REWARDS") or cfg.runs("stripe", "BENCH_STRIPE"):
        # 2. hello: the HTTP ceiling (the rewards group's validations and the stripe group's accepts are
        # ratios to it).
        hello = start_uvicorn("hello", ["bench.hello_app:app"], base_env, cfg.workers)
        servers.append(hello)
        try:
            run.http_phase("hello", hello_request(hello.base), hello)
        finally:
            stop_server(hello)
            run.server_logs["hello"] = _log_info(hello)

    if not any(
        cfg.runs(group, skip)
        for group, skip in (
            ("foundation", None),
            ("previews", "BENCH_PREVIEWS"),
            ("rules", "BENCH_RULES"),
            ("tiers", "BENCH_TIERS"),
            ("rewards", "BENCH_REWARDS"),
            ("stripe", "BENCH_STRIPE"),
            ("gifts", "BENCH_GIFTS"),
        )
    ):
        execute_offline(run, server_url, tag, databases, base_env)
        return

    # 3 and 4: the API on a fresh, migrated database with one program.
    api_db = f"encore_bench_{tag}"
    run_async(lambda: create_database(server_url, api_db))
    databases.append(api_db)
    api_url = with_database(server_url, api_db)
    api_env = {**base_env, "ENCORE_DATABASE_URL": api_url, "ENCORE_LOG_LEVEL": "WARNING"}
    print("api: migrating, creating the program ...", flush=True)
    encore_cli(["migrate"], api_env)
    api_key = json.loads(
        encore_cli(["programs", "create", "--name", "Bench", "--currency", "EUR", "--json"], api_env)
        .strip()
        .splitlines()[-1]
    )["api_key"]
    if cfg.runs("stripe", "BENCH_STRIPE"):
        # The Stripe API the server (and the stripe group's worker) talks to: the tests' stub, here.
        run.stripe_stub = stripe_bench.start_stub()
        api_env["ENCORE_STRIPE_API_BASE"] = run.stripe_stub.url
    api = start_uvicorn("api", ["--factory", "service.app:app_from_env"], api_env, cfg.workers)
    servers.append(api)
    try:
        if cfg.runs("foundation"):
            measure_orders_and_status(run, api, api_key, tag)
        # 10. /healthz while ten hostile previews run (BENCH_PREVIEWS=0 skips).
        if cfg.runs("previews", "BENCH_PREVIEWS"):
            print("previews: /healthz while ten hostile previews run ...", flush=True)
            run.previews = run_async(lambda: previews.measure(api.base, api_key))
        # 7. Earning rules: on the same server and database, programs of their own (BENCH_RULES=0 skips).
        if cfg.runs("rules", "BENCH_RULES"):
            print("earning rules: 50 rules against the base rule, then a simulation ...", flush=True)
            run.rules = rules.measure(run, api, api_env, api_url)
        # 8a. Tiers on against off, on the same server (BENCH_TIERS=0 skips both parts of 8).
        if cfg.runs("tiers", "BENCH_TIERS"):
            print("tiers: orders with tiers on against off ...", flush=True)
            run.tiers_earn = tiers.measure_earn(run, api, api_env)
        # 11. Rewards: redemptions against orders, a hot customer, validations against hello.
        if cfg.runs("rewards", "BENCH_REWARDS"):
            print("rewards: redemptions, one hot customer, code validations ...", flush=True)
            run.rewards = rewards.measure(run, api, api_env, api_url, api_key, tag)
        # 12. Stripe: checkouts into orders by the worker against orders, webhook accepts against hello.
        if cfg.runs("stripe", "BENCH_STRIPE"):
            print("stripe: checkouts into orders by the worker, webhook accepts ...", flush=True)
            run.stripe = stripe_bench.measure(run, api, api_env, api_url, api_key, tag)
        # 13. Surprise gifts: orders with 20 gift rules against none, on the same server.
        if cfg.runs("gifts", "BENCH_GIFTS"):
            print("gifts: orders with 20 gift rules against none ...", flush=True)
            run.gifts = gifts.measure(run, api, api_env, api_url)
    finally:
        stop_server(api)
        run.server_logs["api"] = _log_info(api)
        if run.stripe_stub is not None:
            run.stripe_stub.stop()

    print("ledger verify ...", flush=True)
    verify = subprocess.run(
        [venv_bin("encore"), "ledger", "verify"], cwd=ROOT, env=api_env, capture_output=True, text=True
    )
    output = (verify.stdout + verify.stderr).strip().splitlines()
    run.ledger_verify = {
        "exit_code": verify.returncode,
        "summary": (output[0] if output else "") + ("" if verify.returncode == 0 else " (exit 1)"),
        "output": output[:50],
    }
    run_async(lambda: drop_database(server_url, api_db))
    databases.remove(api_db)
    execute_offline(run, server_url, tag, databases, base_env)


def measure_orders_and_status(run: Run, api: HttpServer, api_key: str, tag: str) -> None:
    """3 and 4: orders, then the status of customers that got one."""
    orders = Orders(api.base, api_key, tag)
    customers_with_orders: set[str] = set()
    run.http_phase("orders", orders, api, on_ok=customers_with_orders.add)
    if not customers_with_orders:
        print("status: no order succeeded; seeding 200 customers with one order each ...", flush=True)
        seeded, problems = run_async(lambda: seed_customers(orders, 200))
        customers_with_orders |= seeded
        for problem in problems:
            print(f"  seeding: {problem}")
    if customers_with_orders:
        statuses = Statuses(api.base, api_key, sorted(customers_with_orders), tag)
        result = run.http_phase("status", statuses, api)
        result.notes.append(f"{len(customers_with_orders)} customers with orders")
    else:
        print("status: no customer could be given an order; the phase is not measured")
        run.phases["status"] = None


def execute_offline(
    run: Run, server_url: str, tag: str, databases: list[str], base_env: dict[str, str]
) -> None:
    """The phases on databases of their own, without the API server: sweeps, tier re-evaluation,
    messaging, webhooks."""
    cfg = run.cfg
    # 5. The set-based ledger sweeps over many lots generated in SQL (BENCH_SWEEP_LOTS=0 skips).
    lots = int(_env_number("BENCH_SWEEP_LOTS", 1_000_000)) if cfg.runs("sweeps") else 0
    if lots > 0:
        sweep_db = f"encore_sweeps_{tag}"
        run_async(lambda: create_database(server_url, sweep_db))
        databases.append(sweep_db)
        sweep_url = with_database(server_url, sweep_db)
        encore_cli(["migrate"], {**base_env, "ENCORE_DATABASE_URL": sweep_url})
        print(f"ledger sweeps over {lots:,} lots ...", flush=True)
        run.sweeps = run_async(lambda: sweeps.measure(sweep_url, lots))
        run_async(lambda: drop_database(server_url, sweep_db))
        databases.remove(sweep_db)

    # 8b. The tier re-evaluation over many customers generated in SQL, on its own database.
    customers = int(_env_number("BENCH_TIER_CUSTOMERS", 1_000_000)) if cfg.runs("tiers", "BENCH_TIERS") else 0
    if customers > 0:
        tiers_db = f"encore_tiers_{tag}"
        run_async(lambda: create_database(server_url, tiers_db))
        databases.append(tiers_db)
        tiers_url = with_database(server_url, tiers_db)
        encore_cli(["migrate"], {**base_env, "ENCORE_DATABASE_URL": tiers_url})
        print(f"tier re-evaluation over {customers:,} customers ...", flush=True)
        run.tiers_reevaluation = run_async(lambda: tiers.measure_reevaluation(tiers_url, customers))
        run_async(lambda: drop_database(server_url, tiers_db))
        databases.remove(tiers_db)

    # 9. Messaging: select + render of many due messages, SMTP delivery to aiosmtpd (BENCH_MESSAGES=0 skips).
    messages = int(_env_number("BENCH_MESSAGES", 100_000)) if cfg.runs("messaging") else 0
    if messages > 0:
        messaging_db = f"encore_messaging_{tag}"
        run_async(lambda: create_database(server_url, messaging_db))
        databases.append(messaging_db)
        messaging_url = with_database(server_url, messaging_db)
        encore_cli(["migrate"], {**base_env, "ENCORE_DATABASE_URL": messaging_url})
        smtp_messages = int(_env_number("BENCH_SMTP_MESSAGES", 5_000))
        print(f"messaging: render {messages:,} due messages, SMTP {smtp_messages:,} ...", flush=True)
        run.messaging = run_async(lambda: messaging.measure(messaging_url, messages, smtp_messages))
        run_async(lambda: drop_database(server_url, messaging_db))
        databases.remove(messaging_db)

    # 6. Webhook delivery: outbox events to a local receiver, one worker then two (BENCH_WEBHOOK_EVENTS=0 skips).
    events = int(_env_number("BENCH_WEBHOOK_EVENTS", 100_000)) if cfg.runs("webhooks") else 0
    if events > 0:
        print(f"webhook delivery of {events:,} events, one worker then two ...", flush=True)
        run.webhooks = run_async(lambda: webhooks.measure(server_url, events))


def write_results(run: Run) -> str:
    table = run.table()
    document = run.document(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = run.started_at.strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"foundation-{stamp}.txt").write_text(table + "\n")
    data = json.dumps(document, indent=2, default=str) + "\n"
    (RESULTS / f"foundation-{stamp}.json").write_text(data)
    (RESULTS / "latest.json").write_text(data)
    return stamp


def main() -> int:
    cfg = Config.from_env()
    run = Run(cfg)
    server_url, source = resolve_server()
    info = run_async(lambda: server_info(server_url))
    run.postmaster = run_async(lambda: postmaster_pid(server_url))
    run.environment = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "client": (
            f"raw HTTP/1.1 + httptools {httptools.__version__}"
            if cfg.client == "raw"
            else f"aiohttp {aiohttp.__version__}"
        )
        + f" on uvloop {importlib.metadata.version('uvloop')}, one process, "
        + f"{cfg.concurrency} keep-alive connections",
        "background_cores_before_run": background_load(),
        "postgres": {"source": source, "url": redact(server_url), **info},
    }
    tag = secrets.token_hex(4)
    databases: list[str] = []
    servers: list[HttpServer] = []
    print(f"database server: {source} {redact(server_url)}; run tag {tag}", flush=True)
    try:
        execute(run, server_url, tag, databases, servers)
    except (Exception, KeyboardInterrupt) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        for server in servers:
            stop_server(server)
        for name in databases:
            try:
                run_async(functools.partial(drop_database, server_url, name))
            except Exception as exc:
                print(f"could not drop database {name}: {exc}", file=sys.stderr)
    stamp = write_results(run)
    print()
    print(run.table())
    print(f"\nwritten: bench/results/foundation-{stamp}.txt, .json and bench/results/latest.json")
    if run.error:
        return 1
    if cfg.enforce and any(entry["met"] is False for entry in run.ratios().values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
