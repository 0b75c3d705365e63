"""Journey sweeps (worker jobs), set-based and idempotent: unique keys on (journey, customer, trigger)
for entries and on (journey, customer, step, trigger) for messages make a rerun or a second worker a no-op.

- `enter_from_events`: outbox events (order placed, shop events, tier changes, points, codes, surprise
  gifts announced by message) enter customers into the enabled journeys they trigger; the journeys are
  an outbox consumer with a position of their own (service/outbox/consumers.py), moved in the statement
  that enters the customers.
- `enter_scheduled`: inactivity, birthdays, first-order anniversaries and the repeat-customer segment.
- `advance`: due steps become queued messages (with their reward: points, or a code given at no cost),
  or the customer exits (and why).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
import structlog

from service.core import db
from service.core.db import Connection, json_value
from service.core.errors import Problem
from service.customers import service as customers
from service.feedback import service as feedback
from service.ledger import service as ledger
from service.messaging import service as messaging
from service.messaging.catalogue import MESSAGE_TYPES
from service.orders import service as orders
from service.outbox import consumers
from service.outbox.service import emit
from service.outreach import domain
from service.outreach.defaults import SURPRISE
from service.outreach.schemas import StepIn
from service.outreach.service import definition_json
from service.programs import service as programs
from service.programs.service import Program
from service.rewards import service as rewards
from service.stripe.published import held_for_stripe

log = structlog.get_logger("encore.journeys")

CHUNK = 5_000
# Outbox topic -> trigger kind.
TRIGGERS = {
    "order.created": "order_placed",
    "event.recorded": "event",
    "tier.upgraded": "tier_upgraded",
    "tier.downgraded": "tier_downgraded",
    "tier.downgrade_warning": "tier_downgrade_warning",
    "points.expiring_soon": "points_expiring",
    "points.earned": "points_earned",
    "redemption.created": "reward_issued",
    "redemption.synced": "reward_issued",  # a code Stripe was to have first: now it has (see stripe.outbound)
    "redemption.expiring_soon": "code_expiring",
    "gift.granted": "gift_granted",  # only a gift its rule announces by message (`announce`)
    "feedback.received": "promoter",  # only a promoter's, of a survey that asks promoters (`promoter_ask`)
}


def _enroll(entries: str, now: str) -> str:
    """The INSERT of new enrollments. `entries` selects program_id, journey_id, customer_id, trigger_key,
    context, anchor_at and the journey's definition; each starts due at its first step's offset from
    its anchor. A customer enters a journey once per trigger key."""
    return f"""
        INSERT INTO journey_enrollment (id, program_id, journey_id, customer_id, trigger_key, context,
                                        anchor_at, next_step, next_due_at, status, entered_at, updated_at)
        SELECT gen_random_uuid(), n.program_id, n.journey_id, n.customer_id, n.trigger_key, n.context, n.anchor_at,
               0, n.anchor_at + (n.definition -> 'offsets' ->> 0)::bigint * interval '1 second', 'active',
               {now}::timestamptz, {now}::timestamptz
        FROM ({entries}) n
        ON CONFLICT (journey_id, customer_id, trigger_key) DO NOTHING
    """


# An event's customer, its order (the order's own event, or a shop event's `order` property), keyed by
# the order (an order enters a journey once) or else by the event. $1 is now. The steps count from the
# event's time, or from now when the event is stamped later (a sweep run with `--now` in the future):
# what an event starts is due from when it is seen, never held back to a simulated date.
_EVENT_ENTRIES = """
    SELECT m.program_id, m.journey_id, c.id AS customer_id,
           CASE WHEN m.topic = 'order.created' THEN 'order:' || (m.payload ->> 'order')
                WHEN m.topic IN ('redemption.created', 'redemption.synced') THEN 'redemption:' || (m.payload ->> 'redemption_id')
                WHEN m.topic = 'gift.granted' THEN 'gift:' || (m.payload ->> 'gift_id')
                WHEN m.topic = 'feedback.received' THEN 'feedback:' || (m.payload ->> 'feedback_id')
                ELSE 'event:' || m.id END AS trigger_key,
           jsonb_build_object('event', m.payload, 'order_id', o.id) AS context,
           least(m.created_at, $1::timestamptz) AS anchor_at, m.definition
    FROM matches m
    JOIN customer c ON c.program_id = m.program_id AND c.external_id = m.payload ->> 'customer'
    LEFT JOIN customer_event ev ON m.topic = 'event.recorded' AND ev.id = (m.payload ->> 'event_id')::uuid
    LEFT JOIN orders o ON o.program_id = m.program_id
         AND o.external_id = coalesce(m.payload ->> 'order', ev.properties ->> 'order', ev.properties ->> 'order_id')
"""


# Active in a program with an enabled journey: elsewhere an event enters nobody.
CONSUMER = consumers.register(
    "journeys", active_programs="SELECT program_id FROM journey WHERE enabled AND deleted_at IS NULL"
)

# $1 now, $2 the triggers (topic -> trigger kind) as JSON.
_ENTER_FROM_EVENTS = f"""
    WITH {consumers.batch(CONSUMER, str(CHUNK))}, matches AS (
        SELECT b.*, j.id AS journey_id, j.definition
        FROM batch b
        JOIN journey j ON j.program_id = b.program_id AND j.enabled AND j.deleted_at IS NULL
             AND j.trigger_kind = ($2::jsonb ->> b.topic) AND b.created_at > j.enabled_at
             AND (j.trigger_kind <> 'event' OR j.definition -> 'trigger' ->> 'event_type' = b.payload ->> 'type')
             -- A code a journey step gave goes out in that step's own message, a gift's code in the
             -- gift's surprise message or its parcel.
             AND (b.topic NOT IN ('redemption.created', 'redemption.synced')
                  OR coalesce(b.payload ->> 'source', '') NOT IN ('journey', 'gift'))
             -- A gift is announced by message only when its rule says so; else it stays a surprise.
             AND (b.topic <> 'gift.granted' OR b.payload ->> 'announce' = 'message')
             AND (b.topic <> 'feedback.received' OR b.payload ->> 'promoter_ask' IS NOT NULL)
             -- A code on its way to Stripe is announced by its redemption.synced.
             AND NOT (b.topic = 'redemption.created' AND {held_for_stripe("b")})
    ), entered AS ({_enroll(_EVENT_ENTRIES, "$1")} RETURNING 1)
    SELECT {consumers.COUNTS}, (SELECT count(*) FROM entered) AS entered
"""


# The shipped `surprise` journey (on) for a program with a gift to announce by message that never had
# one: its journeys may never have been read (which seeds the shipped ones), and gift rules sit below
# outreach and cannot ask for it. On since the program began (no gift.granted event is older), so the
# events that made it enter it. $1 key, $2 trigger kind, $3 definition, $4 now.
_SEED_SURPRISE = f"""
    INSERT INTO journey (id, program_id, key, version, enabled, trigger_kind, definition, enabled_at,
                         created_at, updated_at)
    SELECT gen_random_uuid(), p.id, $1::text, 1, true, $2::text, $3::jsonb, least(p.created_at, $4::timestamptz), $4, $4
    FROM program p
    WHERE p.id IN (SELECT o.program_id FROM outbox o
                   WHERE o.topic = 'gift.granted' AND o.payload ->> 'announce' = 'message' AND {consumers.waiting(CONSUMER)})
      AND NOT EXISTS (SELECT 1 FROM journey j WHERE j.program_id = p.id AND j.key = $1::text)
    ON CONFLICT (program_id, key) WHERE deleted_at IS NULL DO NOTHING
"""


async def enter_from_events(now: datetime) -> int:
    """Events since each journey was turned on; returns the customers entered."""
    entered = 0
    triggers = msgspec.json.encode(TRIGGERS).decode()
    async with db.transaction() as conn:
        await conn.execute(
            _SEED_SURPRISE, SURPRISE.key, SURPRISE.trigger.kind, definition_json(SURPRISE), now
        )
    while True:
        async with db.transaction() as conn:
            row = await consumers.take(conn, CONSUMER, _ENTER_FROM_EVENTS, now, triggers)
        entered += int(row["entered"])
        if row["events"] < CHUNK:
            return entered


# Set-based entry by schedule: each statement inserts the customers a journey's trigger selects today.
# $1 journey id, $2 now; `local_today` is the program's date. Trigger keys make each occasion enter once.
_SCHEDULED = {
    "inactivity": """
        SELECT s.customer_id, 'inactive-after:' || s.order_id AS trigger_key,
               jsonb_build_object('last_order_id', s.order_id) AS context
        FROM (SELECT DISTINCT ON (o.customer_id) o.customer_id, o.id AS order_id, o.placed_at
              FROM orders o WHERE o.program_id = j.program_id ORDER BY o.customer_id, o.placed_at DESC) s
        WHERE s.placed_at <= $2::timestamptz - (j.definition -> 'trigger' ->> 'days')::int * interval '1 day'
          AND s.placed_at > $2::timestamptz - ((j.definition -> 'trigger' ->> 'days')::int + 30) * interval '1 day'
    """,
    "birthday": f"""
        SELECT b.customer_id, 'birthday:' || extract(year FROM local_today)::int AS trigger_key, '{{}}'::jsonb AS context
        FROM ({customers.birthdays_on("j.program_id", "local_today")}) b
    """,
    "first_order_anniversary": f"""
        SELECT f.customer_id, 'anniversary:' || extract(year FROM local_today)::int AS trigger_key, '{{}}'::jsonb AS context
        FROM ({orders.first_order_anniversaries_on("j.program_id", "local_today", "p.timezone")}) f
    """,
    # Surveys due (feedback's): a customer asked by a survey is not asked by it again for 30 days.
    "survey_due": f"""
        SELECT d.customer_id, d.trigger_key, d.context
        FROM ({feedback.surveys_due("j.program_id", "$2::timestamptz")}) d
        WHERE NOT EXISTS (SELECT 1 FROM journey_enrollment e
                          WHERE e.journey_id = j.id AND e.customer_id = d.customer_id
                            AND e.context -> 'survey' ->> 'id' = d.survey_id::text
                            AND e.entered_at > $2::timestamptz - interval '30 days')
    """,
    # Repeat customers whose expected reorder moment (last order + their own median interval, or the
    # journey's default without one) passed within the last 30 days.
    "repeat_customer": """
        SELECT r.customer_id, 'reorder-after:' || r.last_order_id AS trigger_key,
               jsonb_build_object('last_order_id', r.last_order_id, 'interval_days',
                                  round(extract(epoch FROM r.expected_interval) / 86400)) AS context
        FROM (
            SELECT g.customer_id, (array_agg(g.id ORDER BY g.placed_at DESC))[1] AS last_order_id, max(g.placed_at) AS last_at,
                   count(*) AS orders,
                   coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM g.gap)) * interval '1 second',
                            (j.definition -> 'trigger' ->> 'default_interval_days')::int * interval '1 day') AS expected_interval
            FROM (SELECT o.customer_id, o.id, o.placed_at,
                         o.placed_at - lag(o.placed_at) OVER (PARTITION BY o.customer_id ORDER BY o.placed_at) AS gap
                  FROM orders o WHERE o.program_id = j.program_id AND o.status <> 'refunded') g
            GROUP BY g.customer_id
        ) r
        WHERE r.orders >= (j.definition -> 'trigger' ->> 'min_orders')::int
          AND r.last_at + r.expected_interval <= $2::timestamptz AND r.last_at + r.expected_interval > $2::timestamptz - interval '30 days'
    """,
}


_SCHEDULED_ENTRIES = """
    SELECT j.program_id, j.id AS journey_id, c.customer_id, c.trigger_key, c.context, $2::timestamptz AS anchor_at,
           j.definition
    FROM chosen c CROSS JOIN journey j WHERE j.id = $1
"""


async def enter_scheduled(now: datetime) -> int:
    """Every enabled scheduled journey, one statement each; returns the customers entered."""
    entered = 0
    async with db.connection() as conn:
        journeys = await conn.fetch(
            "SELECT id, trigger_kind FROM journey WHERE enabled AND deleted_at IS NULL AND trigger_kind = ANY($1::text[])",
            list(_SCHEDULED),
        )
    for journey in journeys:
        async with db.transaction() as conn:
            entered += int(
                await conn.fetchval(
                    f"""
                    WITH chosen AS (
                        SELECT s.* FROM journey j JOIN program p ON p.id = j.program_id
                        CROSS JOIN LATERAL (SELECT ($2::timestamptz AT TIME ZONE p.timezone)::date AS local_today) d
                        CROSS JOIN LATERAL ({_SCHEDULED[journey["trigger_kind"]]}) s
                        WHERE j.id = $1
                    ), entered AS ({_enroll(_SCHEDULED_ENTRIES, "$2")} RETURNING 1)
                    SELECT count(*) FROM entered
                    """,
                    journey["id"],
                    now,
                )
            )
    return entered


@dataclass(slots=True)
class AdvanceReport:
    queued: int = 0
    exited: int = 0
    completed: int = 0
    rewarded_points: int = 0
    rewarded_codes: int = 0

    @property
    def rows(self) -> int:
        return self.queued + self.exited


# Completed enrollments ($1) into the enabled journeys that follow theirs, anchored now ($2).
_FOLLOWING_ENTRIES = """
    SELECT e.program_id, nj.id AS journey_id, e.customer_id, 'after:' || e.id AS trigger_key,
           e.context - 'event' AS context, $2::timestamptz AS anchor_at, nj.definition
    FROM journey_enrollment e
    JOIN journey j ON j.id = e.journey_id
    JOIN journey nj ON nj.program_id = e.program_id AND nj.enabled AND nj.deleted_at IS NULL
         AND nj.trigger_kind = 'journey_completed' AND nj.definition -> 'trigger' ->> 'journey' = j.key
    WHERE e.id = ANY($1::uuid[])
"""


async def advance(now: datetime) -> AdvanceReport:
    """Due steps, in chunks: each becomes a queued message or an exit; the enrollment moves on. Until
    nothing is due: a run late by days (or at a `--now` days ahead) takes every step due by now, not one
    step per run. It ends: each pass moves enrollments on, and chained journeys cannot loop."""
    report = AdvanceReport()
    while True:
        async with db.transaction() as conn:
            rows = await conn.fetch(
                f"""
                SELECT e.id, e.program_id, e.journey_id, e.customer_id, e.trigger_key, e.context, e.anchor_at,
                       e.next_step, e.entered_at, j.key, j.definition, j.enabled AND j.deleted_at IS NULL AS live,
                       c.external_id, c.transactional_consent, c.marketing_consent,
                       p.points_expire_after_days,
                       EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = e.customer_id AND o.created_at > e.anchor_at
                               AND o.id IS DISTINCT FROM (e.context ->> 'order_id')::uuid) AS ordered_since_entry,
                       coalesce((SELECT o.refunded_amount > 0 FROM orders o WHERE o.id = (e.context ->> 'order_id')::uuid),
                                false) AS trigger_order_refunded
                FROM journey_enrollment e
                JOIN journey j ON j.id = e.journey_id
                JOIN customer c ON c.id = e.customer_id
                JOIN program p ON p.id = e.program_id
                WHERE e.status = 'active' AND e.next_due_at <= $1
                ORDER BY e.next_due_at LIMIT {CHUNK}
                FOR UPDATE OF e SKIP LOCKED
                """,
                now,
            )
            if rows:
                await _advance_chunk(conn, [dict(r) for r in rows], now, report)
        if not rows:
            return report


async def _advance_chunk(
    conn: Connection, rows: list[dict[str, Any]], now: datetime, report: AdvanceReport
) -> None:
    messages: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    point_rewards: dict[str, tuple[dict[str, Any], int, str]] = {}
    codes: dict[str, tuple[dict[str, Any], UUID]] = {}  # dedupe key -> (row, reward): codes to give
    for row in rows:
        definition = json_value(row["definition"])
        steps = [msgspec.convert(s, StepIn) for s in definition["steps"]]
        offsets: list[int] = definition["offsets"]
        index = row["next_step"]
        if index >= len(steps):  # the journey lost steps since: this customer is through it
            moves.append(
                {
                    "id": row["id"],
                    "status": "completed",
                    "next_step": index,
                    "next_due_at": None,
                    "exit_reason": None,
                }
            )
            continue
        step = steps[index]
        due = domain.DueStep(
            exit_on=frozenset(definition.get("exit_on") or ()),
            journey_live=row["live"],
            unsubscribed_all=not row["transactional_consent"],
            marketing_consent=row["marketing_consent"],
            ordered_since_entry=row["ordered_since_entry"],
            trigger_order_refunded=row["trigger_order_refunded"],
        )
        reason = domain.exit_reason(due, step)
        if reason is not None:
            moves.append(
                {
                    "id": row["id"],
                    "status": "exited",
                    "next_step": index,
                    "next_due_at": None,
                    "exit_reason": reason,
                }
            )
            continue
        context = {**json_value(row["context"]), "reward_points": step.reward_points, "offer": step.offer}
        dedupe = f"journey:{row['journey_id']}:{row['customer_id']}:{index}:{row['trigger_key']}"
        messages.append(
            {
                "program_id": str(row["program_id"]),
                "customer_id": str(row["customer_id"]),
                "message_type": step.message_type,
                "category": MESSAGE_TYPES[step.message_type].category,
                "journey_id": str(row["journey_id"]),
                "step": index,
                "trigger_key": row["trigger_key"],
                "dedupe_key": dedupe,
                "context": context,
            }
        )
        if step.reward is not None:
            codes[dedupe] = (row, step.reward)
        if step.reward_points:
            point_rewards[dedupe] = (
                row,
                step.reward_points,
                f"journey {row['key']} step {index + 1}: {step.message_type}",
            )
        upcoming = domain.next_due(row["anchor_at"], offsets, index + 1)
        moves.append(
            {
                "id": row["id"],
                "status": "active" if upcoming else "completed",
                "next_step": index + 1,
                "next_due_at": upcoming,
                "exit_reason": None,
            }
        )
    if codes:
        # Every ledger lock this chunk takes, first and in customer order: a grant of a limited reward
        # takes its row, which a redemption takes after its own customer's lock (see ledger.lock_all).
        await ledger.lock_all(
            conn,
            [
                ledger.Customer(r["program_id"], r["customer_id"], r["external_id"])
                for r in [*(row for row, _ in codes.values()), *(row for row, _, _ in point_rewards.values())]
            ],
            now,
        )
        given = await _give_codes(conn, codes, now)
        for message in messages:
            code = given.get(message["dedupe_key"])
            if code is not None:
                message["context"]["redemption"] = code
        report.rewarded_codes += len(given)
    queued = await messaging.queue(conn, messages, now)
    await conn.execute(
        """
        UPDATE journey_enrollment e SET status = m.status, next_step = m.next_step, next_due_at = m.next_due_at,
               exit_reason = m.exit_reason, updated_at = $2
        FROM jsonb_to_recordset($1::jsonb) AS m(id uuid, status text, next_step int, next_due_at timestamptz, exit_reason text)
        WHERE e.id = m.id
        """,
        msgspec.json.encode(moves).decode(),
        now,
    )
    # Chained journeys: a completed enrollment enters the customer into the journeys that follow it.
    completed = [m["id"] for m in moves if m["status"] == "completed"]
    if completed:
        await conn.execute(_enroll(_FOLLOWING_ENTRIES, "$2"), completed, now)
    for dedupe_key in queued:  # points only for messages this run queued: a rerun credits nothing twice
        reward = point_rewards.get(dedupe_key)
        if reward is not None:
            await _credit_reward(conn, *reward, now)
            report.rewarded_points += reward[1]
    report.queued += len(queued)
    report.exited += sum(1 for m in moves if m["status"] == "exited")
    report.completed += len(completed)


async def _give_codes(
    conn: Connection, codes: dict[str, tuple[dict[str, Any], UUID]], now: datetime
) -> dict[str, dict[str, Any]]:
    """The steps' rewards as codes at no cost, deduped on the message's dedupe key (a step given before
    gives nothing again: its message was queued then, and is not again). A reward that cannot be given
    (paused, out of stock, gone) is logged and the message goes without a code. Each grant in a
    savepoint: a refused one leaves nothing behind. Returns dedupe key -> what the message shows."""
    loaded: dict[UUID, Program] = {}
    given: dict[str, dict[str, Any]] = {}
    for dedupe_key, (row, reward_id) in codes.items():
        program_id = row["program_id"]
        if program_id not in loaded:
            loaded[program_id] = await programs.load(conn, program_id)
        customer = ledger.Customer(program_id, row["customer_id"], row["external_id"])
        try:
            async with conn.transaction():
                granted = await rewards.grant(
                    conn,
                    loaded[program_id],
                    customer,
                    reward_id,
                    source="journey",
                    source_key=dedupe_key,
                    now=now,
                    actor="journey",
                )
        except Problem as problem:
            log.warning(
                "journey_reward_not_given",
                journey=row["key"],
                customer=row["external_id"],
                reward=str(reward_id),
                reason=problem.detail,
            )
            continue
        if granted is not None:
            given[dedupe_key] = {
                "redemption_id": str(granted.redemption_id),
                "code": granted.code,
                "expires_at": granted.expires_at.isoformat() if granted.expires_at else None,
                "reward": {"id": str(reward_id), "name": granted.reward_name},
            }
    return given


async def _credit_reward(
    conn: Connection, row: dict[str, Any], points: int, reason: str, now: datetime
) -> None:
    days = row["points_expire_after_days"]
    result = await ledger.credit(
        conn,
        ledger.Customer(row["program_id"], row["customer_id"], row["external_id"]),
        points,
        kind="adjust",
        reason=reason,
        explanation=f"Gift: {reason}",
        now=now,
        available_at=now,
        expires_at=now + timedelta(days=days) if days else None,
        topic="points.adjusted",
        actor="journey",
    )
    await emit(conn, row["program_id"], result.events, now)
