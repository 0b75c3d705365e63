"""The send sweep: claim due messages with a lease, decide and render them, send outside any
transaction, record every fate (a hard bounce puts the address on the suppression list)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
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


Claimed = tuple[list[dict[str, Any]], service.BatchFacts]


class Sender:
    """One per worker process: its transport keeps SMTP sessions open between runs."""

    def __init__(self, settings: Settings, worker_id: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.transport = delivery.transport_for(
            settings.smtp_url,
            settings.data_dir,
            connections=settings.smtp_connections,
            timeout=settings.smtp_timeout_seconds,
            validate_certs=settings.smtp_validate_certs,
        )
        self.key = settings.signing_key()

    async def _claim(self, now: datetime, limit: int) -> Claimed | None:
        """Up to `limit` due messages leased to this worker, with the facts they need."""
        lease_until = now + timedelta(seconds=self.settings.worker_lease_seconds)
        async with db.transaction() as conn:
            rows = await repository.claim(conn, now, limit, self.worker_id, lease_until)
            return (rows, await service.batch_facts(conn, rows, now)) if rows else None

    async def batches(
        self, now: datetime, limit: int, budget_seconds: float
    ) -> AsyncGenerator[list[service.Prepared], None]:
        """Claimed batches, decided and rendered, until nothing is due or the budget is spent (what the
        render benchmark times). Rendering runs in a thread while the next batch is claimed, so the
        database works on its own core meanwhile; a batch claimed but not handed out is released."""
        started = time.monotonic()
        pending: asyncio.Task[Claimed | None] | None = asyncio.create_task(self._claim(now, limit))
        try:
            while pending is not None:
                claimed = await pending
                pending = None
                if claimed is None:
                    return
                rows, facts = claimed
                if len(rows) == limit and time.monotonic() - started < budget_seconds:
                    pending = asyncio.create_task(self._claim(now, limit))
                key, url = self.key, self.settings.public_url
                yield await asyncio.to_thread(service.prepare_isolated, rows, facts, now, key, url)
        finally:
            if pending is not None:  # claimed ahead, never handed out: the consumer stopped early
                leftover = await pending
                if leftover is not None:
                    async with db.transaction() as conn:
                        await repository.release(conn, [r["id"] for r in leftover[0]], self.worker_id)

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
        """Batches until nothing is due or the run's time budget is spent; a batch is sent while the
        next one renders."""
        report = SendReport()
        budget = self.settings.worker_run_budget_seconds if budget_seconds is None else budget_seconds
        sending: asyncio.Task[list[dict[str, Any]]] | None = None
        async with contextlib.aclosing(
            self.batches(now, self.settings.message_batch_size, budget)
        ) as batches:
            async for prepared in batches:
                report.claimed += len(prepared)
                if sending is not None:
                    report.add(await sending)
                sending = asyncio.create_task(self.deliver(prepared, now))
        if sending is not None:
            report.add(await sending)
        return report

    async def close(self) -> None:
        await self.transport.close()
