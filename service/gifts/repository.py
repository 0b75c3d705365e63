"""The gifts feature's SQL: rules and versions, budgets, the gifts and hold-outs decided, and the reads the
stats and simulations make."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from service.core.db import Connection

RULE_FIELDS = """r.id, r.status, r.current_version, r.published, r.problem_count, r.last_problem,
    r.last_problem_at, r.created_at, r.updated_at, v.definition, v.cost_amount"""
RULE_FROM = "gift_rule r JOIN gift_rule_version v ON v.rule_id = r.id AND v.version = r.current_version"

# On the customer row `c` (LATERAL, with the customer's upsert: no round trip of its own): the items of
# gifts decided without an order that wait for this customer's next parcel.
WAITING_LATERAL = """
    LEFT JOIN LATERAL (
        SELECT count(*) AS gifts_waiting FROM gift gw WHERE gw.customer_id = c.id AND gw.item_status = 'waiting'
    ) gift_state ON true
"""


def _rule(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["definition"] = msgspec.json.decode(data["definition"])
    return data


async def insert_rule(
    conn: Connection,
    *,
    rule_id: UUID,
    program_id: UUID,
    status: str,
    definition: dict[str, Any],
    cost_amount: int,
    now: datetime,
) -> None:
    await conn.execute(
        """
        WITH r AS (
            INSERT INTO gift_rule (id, program_id, status, current_version, published, created_at, updated_at)
            VALUES ($1, $2, $3::text, 1, $3::text = 'active', $6, $6)
            RETURNING id
        )
        INSERT INTO gift_rule_version (rule_id, version, definition, cost_amount, created_at)
        SELECT id, 1, $4::jsonb, $5, $6 FROM r
        """,
        rule_id,
        program_id,
        status,
        msgspec.json.encode(definition).decode(),
        cost_amount,
        now,
    )


async def get_rule(
    conn: Connection, program_id: UUID, rule_id: UUID, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {RULE_FIELDS} FROM {RULE_FROM} WHERE r.id = $1 AND r.program_id = $2 "
        f"{'FOR UPDATE OF r' if lock else ''}",
        rule_id,
        program_id,
    )
    return None if row is None else _rule(row)


async def list_rules(conn: Connection, program_id: UUID, status: str | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {RULE_FIELDS} FROM {RULE_FROM}
        WHERE r.program_id = $1 AND ($2::text IS NULL OR r.status = $2)
        ORDER BY r.created_at, r.id
        """,
        program_id,
        status,
    )
    return [_rule(r) for r in rows]


async def active_rules(conn: Connection, program_id: UUID) -> list[dict[str, Any]]:
    return await list_rules(conn, program_id, "active")


async def update_rule(
    conn: Connection,
    rule_id: UUID,
    *,
    status: str,
    definition: dict[str, Any],
    cost_amount: int,
    new_version: bool,
    now: datetime,
) -> None:
    """Set the status; write the definition as the next version, or over the current one (never active)."""
    await conn.execute(
        """
        WITH r AS (
            UPDATE gift_rule SET status = $2::text,
                   current_version = current_version + CASE WHEN $5 THEN 1 ELSE 0 END,
                   published = published OR $2::text = 'active', updated_at = $6
            WHERE id = $1 RETURNING current_version
        )
        INSERT INTO gift_rule_version (rule_id, version, definition, cost_amount, created_at)
        SELECT $1, r.current_version, $3::jsonb, $4, $6 FROM r
        ON CONFLICT (rule_id, version) DO UPDATE SET definition = EXCLUDED.definition,
            cost_amount = EXCLUDED.cost_amount, created_at = EXCLUDED.created_at
        """,
        rule_id,
        status,
        msgspec.json.encode(definition).decode(),
        cost_amount,
        new_version,
        now,
    )


async def delete_rule(conn: Connection, rule_id: UUID) -> None:
    await conn.execute("DELETE FROM gift_rule WHERE id = $1", rule_id)


async def versions(conn: Connection, rule_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT version, definition, created_at FROM gift_rule_version WHERE rule_id = $1 ORDER BY version DESC",
        rule_id,
    )
    return [{**dict(r), "definition": msgspec.json.decode(r["definition"])} for r in rows]


async def record_problems(conn: Connection, problems: list[tuple[UUID, str]], now: datetime) -> None:
    await conn.execute(
        """
        UPDATE gift_rule r SET problem_count = problem_count + 1, last_problem = p.error, last_problem_at = $3
        FROM unnest($1::uuid[], $2::text[]) AS p(rule_id, error) WHERE r.id = p.rule_id
        """,
        [p[0] for p in problems],
        [p[1] for p in problems],
        now,
    )


# --- deciding ---------------------------------------------------------------------------------------


async def nearest_gift(
    conn: Connection, customer_id: UUID, at: datetime
) -> tuple[datetime | None, datetime | None]:
    """When the customer's gift or hold-out nearest to `at` was decided, and when the latest was given (read
    under the customer's ledger lock). The cooldown looks both ways around the occasion, and around now: an
    order recorded late must not bring a second surprise beside one of today."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT decided_at FROM gift WHERE customer_id = $1
                ORDER BY abs(extract(epoch FROM decided_at - $2::timestamptz)) LIMIT 1) AS nearest,
               (SELECT max(created_at) FROM gift WHERE customer_id = $1) AS latest
        """,
        customer_id,
        at,
    )
    assert row is not None
    return row["nearest"], row["latest"]


async def budget_used(conn: Connection, rule_id: UUID, period: str) -> int:
    used = await conn.fetchval(
        "SELECT used_amount FROM gift_budget WHERE rule_id = $1 AND period = $2", rule_id, period
    )
    return int(used or 0)


async def record_decision(
    conn: Connection, values: dict[str, Any], spend: tuple[str, int, int, int] | None
) -> str:
    """Write a decision and spend its budget, both or neither, in one statement: `recorded`; `taken` when
    this rule already decided this occasion for this customer (another order got there); `over_budget`
    when `spend` (period, cost, limit, room: what must stay free beside the cost) does not fit. Run under
    the customer's ledger lock: a decision of the same customer, rule and occasion is committed before
    this reads, so the NOT EXISTS holds; the budget row's lock orders concurrent customers, and its
    condition is read under it."""
    period, cost, limit, room = spend if spend is not None else (None, 0, 0, 0)
    row = await conn.fetchrow(
        """
        WITH fresh AS (
            SELECT NOT EXISTS (SELECT 1 FROM gift WHERE rule_id = $3 AND customer_id = $5 AND occasion = $6) AS ok
        ), b AS (
            INSERT INTO gift_budget AS b (rule_id, period, used_amount)
            SELECT $3, $17::text, $18::bigint FROM fresh
            WHERE fresh.ok AND $17::text IS NOT NULL AND $18::bigint + $20::bigint <= $19::bigint
              -- A period's use only grows: what does not fit now never will, so an exhausted budget is
              -- left unlocked (the upsert would lock its row even when its condition refuses).
              AND NOT EXISTS (SELECT 1 FROM gift_budget x WHERE x.rule_id = $3 AND x.period = $17::text
                              AND x.used_amount + $18::bigint + $20::bigint > $19::bigint)
            ON CONFLICT (rule_id, period) DO UPDATE SET used_amount = b.used_amount + EXCLUDED.used_amount
                WHERE b.used_amount + EXCLUDED.used_amount + $20::bigint <= $19::bigint
            RETURNING used_amount
        ), g AS (
            INSERT INTO gift (id, program_id, rule_id, rule_version, customer_id, occasion, trigger, outcome,
                              order_id, cost_amount, currency, budget_period, given, item_status, decided_at,
                              created_at)
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16 FROM fresh
            WHERE fresh.ok AND ($17::text IS NULL OR EXISTS (SELECT 1 FROM b))
            ON CONFLICT ON CONSTRAINT gift_once DO NOTHING
            RETURNING id
        )
        SELECT (SELECT ok FROM fresh) AS fresh, (SELECT count(*) FROM g) AS recorded
        """,
        values["id"],
        values["program_id"],
        values["rule_id"],
        values["rule_version"],
        values["customer_id"],
        values["occasion"],
        values["trigger"],
        values["outcome"],
        values["order_id"],
        values["cost_amount"],
        values["currency"],
        values["budget_period"],
        msgspec.json.encode(values["given"]).decode(),
        values["item_status"],
        values["decided_at"],
        values["created_at"],
        period,
        cost,
        limit,
        room,
    )
    assert row is not None
    if row["recorded"]:
        return "recorded"
    return "over_budget" if row["fresh"] else "taken"


async def set_given(conn: Connection, gift_id: UUID, given: list[dict[str, Any]]) -> None:
    """What the gift gave, once granted (codes and entries exist only after the row that deduplicates)."""
    await conn.execute(
        "UPDATE gift SET given = $2::jsonb WHERE id = $1", gift_id, msgspec.json.encode(given).decode()
    )


GIFT_FIELDS = """g.id, g.rule_id, g.rule_version, g.trigger, g.given, g.decided_at, g.order_id,
    v.definition ->> 'name' AS rule_name, v.definition ->> 'announce' AS announce"""


async def take_waiting(conn: Connection, customer_id: UUID, order_id: UUID) -> list[dict[str, Any]]:
    """The items waiting for the customer's next parcel, now picked for this order."""
    rows = await conn.fetch(
        f"""
        WITH taken AS (
            UPDATE gift SET item_status = 'picked', picked_order_id = $2
            WHERE customer_id = $1 AND item_status = 'waiting'
            RETURNING *
        )
        SELECT {GIFT_FIELDS} FROM taken g
        JOIN gift_rule_version v ON v.rule_id = g.rule_id AND v.version = g.rule_version
        ORDER BY g.decided_at, g.id
        """,
        customer_id,
        order_id,
    )
    return [{**dict(r), "given": msgspec.json.decode(r["given"])} for r in rows]


# --- the daily sweep -----------------------------------------------------------------------------------


async def programs_with_triggers(conn: Connection, triggers: list[str]) -> list[tuple[UUID, list[str]]]:
    """Programs with an active rule of one of these triggers, and which of them."""
    rows = await conn.fetch(
        f"""
        SELECT r.program_id, array_agg(DISTINCT v.definition -> 'trigger' ->> 'kind') AS triggers
        FROM {RULE_FROM}
        WHERE r.status = 'active' AND v.definition -> 'trigger' ->> 'kind' = ANY($1::text[])
        GROUP BY r.program_id ORDER BY r.program_id
        """,
        triggers,
    )
    return [(r["program_id"], sorted(r["triggers"])) for r in rows]


async def customers_of(conn: Connection, candidates: str, *params: Any) -> list[str]:
    """The external ids of the customers a published SELECT of `customer_id`s picks (its $-parameters)."""
    rows = await conn.fetch(
        f"SELECT c.external_id FROM ({candidates}) s JOIN customer c ON c.id = s.customer_id "
        'ORDER BY c.external_id COLLATE "C"',  # code-point order, as the simulation sorts
        *params,
    )
    return [r["external_id"] for r in rows]


# --- the effect ------------------------------------------------------------------------------------------


async def totals(conn: Connection, rule_id: UUID, version: int | None) -> dict[str, Any]:
    row = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE outcome = 'granted') AS granted,
               count(*) FILTER (WHERE outcome = 'held_out') AS held_out,
               coalesce(sum(cost_amount), 0) AS cost
        FROM gift WHERE rule_id = $1 AND ($2::int IS NULL OR rule_version = $2) AND outcome <> 'recovery'
        """,
        rule_id,
        version,
    )
    assert row is not None
    return dict(row)


async def repeat_counts(
    conn: Connection, rule_id: UUID, version: int | None, windows: list[int], now: datetime
) -> list[dict[str, Any]]:
    """Per window (days) and group: the customers whose window after the decision has passed, and those
    of them who ordered again within it (an order after the decision, not the one decided on, not refunded
    in full). A customer
    decided on more than once counts once, from their first decision."""
    rows = await conn.fetch(
        """
        WITH first AS (
            SELECT DISTINCT ON (customer_id) customer_id, outcome, decided_at, order_id
            FROM gift WHERE rule_id = $1 AND ($2::int IS NULL OR rule_version = $2) AND outcome <> 'recovery'
            ORDER BY customer_id, decided_at, id
        )
        SELECT w.days, f.outcome, count(*) AS customers,
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM orders o
                   WHERE o.customer_id = f.customer_id AND o.placed_at > f.decided_at
                     AND o.placed_at <= f.decided_at + w.days * interval '1 day'
                     AND o.id IS DISTINCT FROM f.order_id AND o.status <> 'refunded')) AS repeated
        FROM unnest($3::int[]) AS w(days)
        JOIN first f ON f.decided_at + w.days * interval '1 day' <= $4
        GROUP BY w.days, f.outcome
        """,
        rule_id,
        version,
        windows,
        now,
    )
    return [dict(r) for r in rows]


# --- the simulation ---------------------------------------------------------------------------------------


async def latest_decisions(
    conn: Connection, program_id: UUID, since: datetime, before: datetime
) -> dict[UUID, datetime]:
    """Per customer, their latest gift or hold-out of any rule decided in [since, before): where a
    simulation's cooldown starts (nothing older than the cooldown can bind)."""
    rows = await conn.fetch(
        """
        SELECT customer_id, max(decided_at) AS decided_at FROM gift
        WHERE program_id = $1 AND decided_at >= $2 AND decided_at < $3
        GROUP BY customer_id
        """,
        program_id,
        since,
        before,
    )
    return {r["customer_id"]: r["decided_at"] for r in rows}


async def customers_at(
    conn: Connection,
    program_id: UUID,
    moments: list[tuple[UUID, datetime]],
    stats_lateral: str,
    tier_sql: str,
) -> list[Any]:
    """Each (customer id, moment) as the customer was then, in the order given: external id, consent, and
    what the published fragments say on `s.customer_id` and `s.at` (`stats_lateral`: order_count and
    last_order_at; `tier_sql`: the tier held, as `tier`)."""
    return await conn.fetch(
        f"""
        SELECT c.external_id, c.marketing_consent, order_count, last_order_at, {tier_sql} AS tier
        FROM unnest($2::uuid[], $3::timestamptz[]) WITH ORDINALITY AS s(customer_id, at, i)
        JOIN customer c ON c.id = s.customer_id AND c.program_id = $1
        {stats_lateral}
        ORDER BY s.i
        """,
        program_id,
        [m[0] for m in moments],
        [m[1] for m in moments],
    )


async def list_gifts(
    conn: Connection,
    program_id: UUID,
    *,
    customer: str | None,
    order: str | None,
    rule_id: UUID | None,
    outcome: str | None,
    item_status: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Gifts and hold-outs, newest first; `order` matches the order decided on or the one that picked
    a waiting item."""
    rows = await conn.fetch(
        """
        SELECT g.id, g.rule_id, g.rule_version, v.definition ->> 'name' AS rule_name, c.external_id AS customer,
               g.trigger, g.occasion, g.outcome, o.external_id AS order_external_id, g.cost_amount, g.currency,
               g.given, g.item_status, p.external_id AS picked_order_external_id, g.decided_at, g.created_at
        FROM gift g
        JOIN gift_rule_version v ON v.rule_id = g.rule_id AND v.version = g.rule_version
        JOIN customer c ON c.id = g.customer_id
        LEFT JOIN orders o ON o.id = g.order_id
        LEFT JOIN orders p ON p.id = g.picked_order_id
        WHERE g.program_id = $1 AND ($2::text IS NULL OR c.external_id = $2)
          AND ($3::text IS NULL OR o.external_id = $3 OR p.external_id = $3)
          AND ($4::uuid IS NULL OR g.rule_id = $4) AND ($5::text IS NULL OR g.outcome = $5)
          AND ($6::text IS NULL OR g.item_status = $6)
          AND ($7::timestamptz IS NULL OR (g.created_at, g.id) < ($7, $8::uuid))
        ORDER BY g.created_at DESC, g.id DESC LIMIT $9
        """,
        program_id,
        customer,
        order,
        rule_id,
        outcome,
        item_status,
        None if after is None else after[0],
        None if after is None else after[1],
        limit,
    )
    return [{**dict(r), "given": msgspec.json.decode(r["given"])} for r in rows]
