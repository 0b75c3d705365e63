"""The send sweep: claim due messages with a lease, decide and render them, send outside any
transaction, record every fate (a hard bounce puts the address on the suppression list)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.core import db
from service.messaging import delivery, repository, service
from service.settings import Settings


@dataclass(slots=True)
class SendReport:
    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    suppressed: int = 0
    failed: int = 0
    retrying: int = 0

    @property
    def rows(self) -> int:
        return self.claimed

    def add(self, outcomes: list[dict[str, Any]]) -> None:
        for outcome in outcomes:
            status = outcome.get("status")
            if status == "queued":
                self.retrying += 1
            elif status in ("sent", "deferred", "suppressed", "failed"):
                setattr(self, status, getattr(self, status) + 1)


class Sender:
    """One per worker process: its transport keeps SMTP sessions open between runs."""

    def __init__(
        self, settings: Settings, worker_id: str, transport: delivery.Transport | None = None
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.transport = transport or delivery.transport_for(
            settings.smtp_url,
            settings.data_dir,
            connections=settings.smtp_connections,
            timeout=settings.smtp_timeout_seconds,
            validate_certs=settings.smtp_validate_certs,
        )
        self.key = settings.signing_key()

    async def prepare_batch(self, now: datetime, limit: int) -> list[service.Prepared]:
        """Claim up to `limit` due messages and decide/render them (what the render benchmark times)."""
        lease_until = now + timedelta(seconds=self.settings.worker_lease_seconds)
        async with db.transaction() as conn:
            rows = await repository.claim(conn, now, limit, self.worker_id, lease_until)
            if not rows:
                return []
            facts = await service.batch_facts(conn, rows, now)
        # Rendering is CPU work: done outside the transaction so its connection goes back to the pool.
        return service.prepare(rows, facts, now, self.key, self.settings.public_url)

    async def deliver(self, prepared: list[service.Prepared], now: datetime) -> list[dict[str, Any]]:
        outcomes = [p.outcome for p in prepared if p.envelope is None]
        sendable = [(p, p.envelope) for p in prepared if p.envelope is not None]
        results = await asyncio.gather(*(self.transport.send(delivery.build_mail(e)) for _, e in sendable))
        bounces = []
        for (item, envelope), result in zip(sendable, results, strict=True):
            outcomes.append(service.after_send(item, result, now))
            if result.bounce:
                bounces.append((item.row["program_id"], envelope.to_email, "hard_bounce", result.error))
        async with db.transaction() as conn:
            await repository.record(conn, outcomes, self.worker_id, now)
            await repository.suppress_addresses(conn, bounces, now)
        return outcomes

    async def run(self, now: datetime, budget_seconds: float | None = None) -> SendReport:
        """Batches until nothing is due or the run's time budget is spent."""
        report = SendReport()
        budget = self.settings.worker_run_budget_seconds if budget_seconds is None else budget_seconds
        started = time.monotonic()
        while True:
            prepared = await self.prepare_batch(now, self.settings.message_batch_size)
            if not prepared:
                return report
            report.claimed += len(prepared)
            report.add(await self.deliver(prepared, now))
            if len(prepared) < self.settings.message_batch_size or time.monotonic() - started > budget:
                return report

    async def close(self) -> None:
        await self.transport.close()
