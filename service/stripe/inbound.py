"""The worker's side of Stripe's events: each stored event claimed with a lease, what it needs from Stripe
fetched outside any transaction, then applied in one transaction with its result — an order through the
earning pipeline (as `POST /v1/orders`), a refund or a lost dispute through the refund path. A refund
whose checkout has not been seen yet waits and is retried, never dropped; Stripe unreachable or
rate-limited is retried with backoff; what can never work is marked failed with the reason, and
`POST /v1/stripe/events/{id}/retry` tries it again.

Which customer a checkout belongs to, in this order: the `encore_customer_id` metadata of the session or
of its Stripe customer (the shop's own id); the customer holding that `stripe_customer_id`; the customer
with that e-mail (case-insensitive); else a new customer whose external id is the Stripe customer id, or
`email:<address>` for a guest. The customer takes the Stripe customer id when nobody holds it yet.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import UUID

import stripe
import structlog

from service.core import db
from service.core.clock import Clock
from service.core.db import Connection
from service.core.errors import Conflict, Problem
from service.core.fields import EMAIL_PATTERN
from service.core.money import format_money
from service.core.secrets import CannotOpen
from service.core.work import Work, committed
from service.customers import service as customers
from service.earning import inputs, pipeline
from service.orders import service as orders
from service.programs import service as programs
from service.rewards import service as rewards
from service.settings import Settings
from service.stripe import client as stripe_client
from service.stripe import domain, repository

log = structlog.get_logger("encore.stripe")

MAX_ATTEMPTS = 12  # Stripe or the database failing: about 3.4 hours of backoff, then failed
_EMAIL = re.compile(EMAIL_PATTERN)
# Refunds after checkouts: a batch applies its checkouts first, so a refund in the same batch finds its order.
_STAGE = {"record": 0, "ignore": 0, "refund": 1, "reverse": 1}


@dataclass(slots=True)
class Counts:
    claimed: int = 0
    processed: int = 0
    waiting: int = 0
    failed: int = 0
    ignored: int = 0
    lost: int = 0  # the lease ran out and another worker took the event: its result stands

    def add(self, other: Counts) -> None:
        for name in ("claimed", "processed", "waiting", "failed", "ignored", "lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # processed | waiting | failed | ignored
    text: str
    error: str | None = None
    retry_in: timedelta | None = None  # waiting: when to try again


class Wait(Exception):
    """The event cannot be applied yet (its order is not there): try again later."""


class LostClaim(Exception):
    """The event's lease ran out and another worker claimed it: this attempt's work is rolled back."""


@dataclass(slots=True)
class Processor:
    settings: Settings
    clock: Clock
    worker_id: str
    _connections: stripe_client.Connections = field(init=False)
    _errors: dict[UUID, str | None] = field(default_factory=dict)  # per program: the run's last failure

    def __post_init__(self) -> None:
        self._connections = stripe_client.Connections(self.settings)

    async def run(self, *, ids: list[UUID] | None = None, limit: int | None = None) -> Counts:
        """Claim the due events (or the events `ids`) and process them; returns what became of them."""
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.stripe_lease_seconds)
        async with db.transaction() as conn:
            events = await repository.claim_events(
                conn, now, limit or self.settings.stripe_batch_size, self.worker_id, lease, ids
            )
        counts = Counts(claimed=len(events))
        if not events:
            return counts
        self._connections.clear()
        self._errors.clear()
        async with stripe_client.stripe_for(self.settings) as api:
            slots = asyncio.Semaphore(self.settings.stripe_concurrency)

            async def one(event: dict[str, Any]) -> str:
                async with slots:
                    return await self._process(api, event)

            for stage in (0, 1):
                staged = [e for e in events if _STAGE[self._kind(e)] == stage]
                for status in await asyncio.gather(*(one(e) for e in staged)):
                    setattr(counts, status, getattr(counts, status) + 1)
        # The connections' state once per run (not in each event's transaction: one row per program).
        async with db.transaction() as conn:
            for program_id, error in sorted(self._errors.items()):
                await repository.note_state(conn, program_id, self.clock.now(), error)
        return counts

    def _kind(self, event: dict[str, Any]) -> str:
        if event["type"] in domain.REFUND_TYPES or event["type"] == domain.CHARGE_REFUNDED:
            return "refund"
        if event["type"] == domain.DISPUTE_CLOSED:
            return "reverse"
        return "record"

    async def _process(self, api: stripe_client.Stripe, event: dict[str, Any]) -> str:
        """One event: fetch, apply and record the result in one transaction; a failure's result in one of
        its own. Returns the status it ended in (`lost` when another worker has it now)."""
        try:
            return await self._attempt(api, event)
        except LostClaim:
            log.warning("stripe_event_claim_lost", stripe_event=event["stripe_id"], worker=self.worker_id)
            return "lost"

    async def _attempt(self, api: stripe_client.Stripe, event: dict[str, Any], again: bool = False) -> str:
        program_id: UUID = event["program_id"]
        obj: Mapping[str, Any] = (event["payload"].get("data") or {}).get("object") or {}
        act: domain.Act | None = None
        try:
            found = await self._connections.get(program_id)
            if found is None:
                outcome = Outcome("failed", "", "this program has no Stripe connection any more")
                return await self._finish(event, outcome)
            act = domain.act_on(
                event["type"], obj, connection_live=found.row["mode"] == "live", event_live=event["livemode"]
            )
            if act.kind == "ignore":
                return await self._finish(event, Outcome("ignored", act.why))
            fetched: dict[str, Any] = {}
            if act.kind == "record":
                if found.api_key is None:
                    raise CannotOpen("the connection's API key cannot be decrypted: connect again")
                fetched = await _fetch_checkout(api.client(found.api_key), str(obj.get("id")))
            async with db.transaction() as conn:
                program = await programs.load(conn, program_id, crediting=True)
                work: Work[programs.Program] = Work(
                    conn, program_id, program, self.clock.now(), f"stripe event {event['stripe_id']}"
                )
                if act.kind == "record":
                    text = await _record(work, found.row, fetched)
                elif act.kind == "refund":
                    text = await _refunds(work, event, obj)
                else:
                    text = await _reverse(work, obj)
                status = "ignored" if text.startswith("ignored: ") else "processed"
                await self._write(conn, event, Outcome(status, text.removeprefix("ignored: ")))
            await committed(work)
            return status
        except LostClaim:
            raise
        except Wait as waiting:
            return await self._finish(event, self._waiting(event, str(waiting)))
        except Conflict as conflict:
            if conflict.field == "external_id" and act is not None and act.kind == "record" and not again:
                # The shop (or another event of the session) recorded the order meanwhile, and the rollback
                # took the payment's row with it: once more, as an order recorded already.
                return await self._attempt(api, event, again=True)
            if conflict.field == "stripe_customer_id":  # another event gave it to a customer a moment ago
                retry_in = timedelta(seconds=domain.backoff_seconds(event["attempts"]))
                return await self._finish(event, Outcome("waiting", "retrying", conflict.detail, retry_in))
            return await self._finish(event, Outcome("failed", "", conflict.detail))
        except Problem as problem:  # the pipeline's refusal: the same every time
            return await self._finish(event, Outcome("failed", "", problem.detail))
        except CannotOpen as exc:
            return await self._finish(event, Outcome("failed", "", str(exc)))
        except Exception as exc:
            if isinstance(exc, stripe.StripeError) and not stripe_client.is_passing(exc):
                return await self._finish(event, Outcome("failed", "", stripe_client.describe(exc)))
            if not isinstance(exc, stripe.StripeError):
                log.exception("stripe_event_error", stripe_event=event["stripe_id"])
            error = stripe_client.describe(exc)
            if event["attempts"] >= MAX_ATTEMPTS:
                return await self._finish(
                    event, Outcome("failed", "", f"gave up after {MAX_ATTEMPTS} attempts: {error}")
                )
            retry_in = timedelta(seconds=domain.backoff_seconds(event["attempts"]))
            return await self._finish(event, Outcome("waiting", "retrying", error, retry_in))

    def _waiting(self, event: dict[str, Any], why: str) -> Outcome:
        if self.clock.now() - event["received_at"] > domain.WAIT_FOR_ORDER:
            return Outcome("failed", "", f"{why}, for more than {domain.WAIT_FOR_ORDER.days} days")
        return Outcome("waiting", why, None, timedelta(seconds=domain.backoff_seconds(event["attempts"])))

    async def _finish(self, event: dict[str, Any], outcome: Outcome) -> str:
        async with db.transaction() as conn:
            await self._write(conn, event, outcome)
        return outcome.status

    async def _write(self, conn: Connection, event: dict[str, Any], outcome: Outcome) -> None:
        now = self.clock.now()
        due = now + outcome.retry_in if outcome.retry_in is not None else now
        if not await repository.finish_event(
            conn,
            event["id"],
            self.worker_id,
            status=outcome.status,
            outcome=outcome.text or None,
            error=outcome.error,
            next_attempt_at=due,
            now=now,
        ):
            # The lease ran out and another worker has the event: its result is the one that stands.
            raise LostClaim(event["stripe_id"])
        failed = outcome.error if outcome.status == "failed" else None
        self._errors[event["program_id"]] = failed or self._errors.get(event["program_id"])


async def prune(cutoff: datetime) -> int:
    """Housekeeping: events finished before `cutoff` are forgotten."""
    async with db.connection() as conn:
        return await repository.prune_events(conn, cutoff)


# --- checkouts -------------------------------------------------------------------------------------


async def _fetch_checkout(client: stripe.StripeClient, session_id: str) -> dict[str, Any]:
    """The session (its customer and the discounts' breakdown expanded) and every line item with its
    product, as plain dicts."""
    # The SDK's raw requests (its retries, errors and idempotency as for the typed methods), read as the
    # JSON they are: building its typed objects and turning them back into dicts was most of an event's
    # CPU in the bench.
    path = f"/v1/checkout/sessions/{quote(session_id, safe='')}"
    session = await _get(client, path, expand=["customer", "total_details.breakdown"])
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = await _get(
            client,
            f"{path}/line_items",
            limit=100,
            expand=["data.price.product"],
            **({"starting_after": after} if after else {}),
        )
        data = page.get("data") or []
        items.extend(data)
        if not page.get("has_more") or not data:
            return {"session": session, "items": items}
        after = str(data[-1]["id"])


async def _get(client: stripe.StripeClient, path: str, **params: Any) -> dict[str, Any]:
    response = await client.raw_request_async("get", path, **params)
    data = response.data
    if not isinstance(data, dict):
        raise Problem(f"Stripe answered {path} with no object")
    return data


async def _customer_ref(conn: Connection, program_id: UUID, facts: domain.Checkout) -> inputs.CustomerRef:
    holder = (
        await customers.find_for_payment(
            conn, program_id, stripe_customer_id=facts.stripe_customer, email=None
        )
        if facts.stripe_customer
        else None
    )
    if facts.customer_hint:
        external_id = facts.customer_hint
    elif holder is not None:
        external_id = holder["external_id"]
    else:
        by_email = await customers.find_for_payment(
            conn, program_id, stripe_customer_id=None, email=facts.email
        )
        external_id = (
            by_email["external_id"]
            if by_email is not None
            else domain.new_customer_id(facts.stripe_customer, facts.email) or ""
        )
    if not external_id:
        raise Problem("the checkout names no customer: no Stripe customer, no e-mail, no encore_customer_id")
    profile: dict[str, Any] = {}
    existing = await customers.find(conn, program_id, external_id)
    if facts.stripe_customer and holder is None and (existing is None or not existing["stripe_customer_id"]):
        profile["stripe_customer_id"] = facts.stripe_customer
    if existing is None and facts.email and _EMAIL.fullmatch(facts.email):
        profile["email"] = facts.email
        if facts.name:
            profile["name"] = facts.name
    return inputs.CustomerRef(external_id, profile)


async def _codes(conn: Connection, program_id: UUID, facts: domain.Checkout) -> list[str]:
    """Encore's codes among the promotion codes the checkout used."""
    if not facts.promotion_codes:
        return []
    ids = await repository.codes_for_promotions(conn, program_id, list(facts.promotion_codes))
    shown = await rewards.codes_shown(conn, ids)
    return [str(shown[i]["code"]) for i in ids if i in shown]


async def _record(
    work: Work[programs.Program], connection: Mapping[str, Any], fetched: dict[str, Any]
) -> str:
    conn, program, now = work.conn, work.program, work.now
    facts = domain.checkout(
        fetched["session"],
        fetched["items"],
        connection["sku_metadata_key"],
        connection["category_metadata_key"],
    )
    if not facts.lines:
        return "ignored: the session has no line items"
    codes = await _codes(conn, program.id, facts)
    if facts.payment_intent:
        await repository.record_payment(
            conn,
            program.id,
            facts.payment_intent,
            facts.session_id,
            facts.session_id,
            facts.currency,
            facts.charged_amount,
            now,
        )
    existing = await orders.find(conn, program.id, facts.session_id)
    if existing is not None or not connection["create_orders"]:
        why = (
            "order already recorded (posted by the shop): not recorded twice"
            if existing is not None
            else "create_orders is off: the shop posts its orders"
        )
        used = await _use_codes(work, codes, facts.session_id if existing is not None else None)
        return why + used
    ref = await _customer_ref(conn, program.id, facts)
    order = inputs.Order(
        external_id=facts.session_id,
        placed_at=facts.placed_at,
        customer=ref,
        currency=facts.currency,
        lines=tuple(inputs.Line(x.sku, x.quantity, x.unit_amount, x.name, x.category) for x in facts.lines),
        total_amount=facts.total_amount,
        discount_amount=facts.discount_amount,
        shipping_amount=facts.shipping_amount,
        attributes={"source": "stripe_checkout", "stripe_payment_intent": facts.payment_intent},
        codes=tuple(codes),
    )
    created = await pipeline.record_order(work, order)
    text = (
        f"order {facts.session_id} recorded for customer {ref.external_id}: "
        f"{created.order.points_earned} points ({created.order.earn_explanation})"
    )
    applied = {code.code for code in created.codes if code.result == "applied"}
    for code in created.codes:
        text += f"; code {code.code}: {code.result}"
    # Stripe gave the discount: a code the order's own checks refused (another customer paid with it) is
    # spent all the same, or it could be used a second time in Encore.
    return text + await _use_codes(work, [c for c in codes if c not in applied], facts.session_id)


async def _use_codes(work: Work[programs.Program], codes: list[str], order_external_id: str | None) -> str:
    """Encore's codes a checkout used, marked used whatever the cart: Stripe applied them."""
    said = ""
    for code in codes:
        try:
            result = await rewards.used_at_payment(work.conn, work.program, code, order_external_id, work.now)
            said += f"; code {code}: {result} (applied by Stripe)"
        except Problem as refused:
            said += f"; code {code}: {refused.detail}"
    return said


# --- refunds and disputes --------------------------------------------------------------------------


async def _refunds(work: Work[programs.Program], event: dict[str, Any], obj: Mapping[str, Any]) -> str:
    if event["type"] in domain.REFUND_TYPES:
        return await _refund(
            work,
            str(obj.get("id")),
            obj.get("payment_intent"),
            int(obj.get("amount") or 0),
            obj.get("currency"),
        )
    # charge.refunded: the fallback for API versions before 2024-10-28, which send no refund.* events
    if (event["api_version"] or "") >= "2024-10-28":
        return "ignored: since API 2024-10-28 refund.created and refund.updated report each refund"
    said = []
    listed = obj.get("refunds")
    refunds = listed.get("data") if isinstance(listed, Mapping) else None
    pi = obj.get("payment_intent")
    if not refunds:  # not listed (or an empty list): the amount refunded so far, as one refund of what is new
        payment = await repository.lock_payment(work.conn, work.program.id, str(pi))
        before = 0 if payment is None else int(payment["refunded_amount"])
        amount = int(obj.get("amount_refunded") or 0) - before
        if amount <= 0:
            return "ignored: nothing refunded that was not reversed already"
        refunds = [
            {"id": f"{obj.get('id')}:{obj.get('amount_refunded')}", "amount": amount, "status": "succeeded"}
        ]
    for refund in refunds:
        if refund.get("status") == "succeeded":
            said.append(
                await _refund(
                    work, str(refund["id"]), pi, int(refund.get("amount") or 0), obj.get("currency")
                )
            )
    return "; ".join(said) or "ignored: no succeeded refund"


async def _order_of(work: Work[programs.Program], payment_intent: Any) -> tuple[dict[str, Any], Any]:
    conn, program = work.conn, work.program
    if not isinstance(payment_intent, str) or not payment_intent:
        raise Problem("the refund or dispute names no payment intent")
    payment = await repository.lock_payment(conn, program.id, payment_intent)
    if payment is None:
        raise Wait(f"waiting for the checkout of payment intent {payment_intent}")
    found = await orders.find(conn, program.id, payment["order_external_id"])
    if found is None:
        raise Wait(f"waiting for order {payment['order_external_id']}")
    return payment, found[1]


async def _refund(
    work: Work[programs.Program], refund_id: str, payment_intent: Any, amount: int, currency: Any
) -> str:
    payment, order = await _order_of(work, payment_intent)  # the payment locked: one refund at a time
    if await repository.refund_seen(work.conn, work.program.id, refund_id):
        return f"ignored: refund {refund_id} was reversed already"
    if isinstance(currency, str) and currency.upper() != payment["currency"]:
        raise Problem(f"refund {refund_id} is in {currency.upper()}, its payment in {payment['currency']}")
    share = domain.order_refund_amount(
        amount,
        int(payment["refunded_amount"]),
        int(payment["amount_total"]),
        order.total_amount,
        order.refunded_amount,
    )
    return await _reverse_share(work, refund_id, payment, order, amount, share, "refund")


async def _reverse(work: Work[programs.Program], dispute: Mapping[str, Any]) -> str:
    """A dispute lost: what is left of the order is reversed as a refund in full."""
    dispute_id = str(dispute.get("id"))
    payment, order = await _order_of(work, dispute.get("payment_intent"))
    if await repository.refund_seen(work.conn, work.program.id, dispute_id):
        return f"ignored: dispute {dispute_id} was reversed already"
    left = max(int(payment["amount_total"]) - int(payment["refunded_amount"]), 0)
    share = max(order.total_amount - order.refunded_amount, 0)
    return await _reverse_share(work, dispute_id, payment, order, left, share, "lost dispute")


async def _reverse_share(
    work: Work[programs.Program],
    refund_id: str,
    payment: Mapping[str, Any],
    order: Any,
    stripe_amount: int,
    share: int,
    what: str,
) -> str:
    if not await repository.record_refund(
        work.conn, work.program.id, refund_id, payment["payment_intent_id"], stripe_amount, share, work.now
    ):
        return f"ignored: {what} {refund_id} was reversed already"
    if share == 0:
        return f"ignored: {what} {refund_id}: nothing left to refund on order {order.external_id}"
    out, _ = await pipeline.refund_order(
        work, order.external_id, inputs.Refund(external_id=refund_id, amount=share)
    )
    return (
        f"{what} {refund_id} of order {order.external_id}: {format_money(out.amount, out.currency)}, "
        f"{out.points_reversed} points reversed"
        + (f", {out.debt_recorded} as debt" if out.debt_recorded else "")
    )
