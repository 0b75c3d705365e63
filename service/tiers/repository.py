from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from service.core.db import Connection
from service.tiers.domain import MetricKey

TIER_FIELDS = "t.id, t.key, t.version, t.definition, t.created_at, t.updated_at"
HOLDING_FIELDS = "tier_id, tier_since, tier_source, tier_manual_until, tier_warned_at"

# The tier key of the customer row `c`, for the rules' `customer.tier` fact (a LATERAL fragment).
TIER_KEY_LATERAL = (
    "LEFT JOIN LATERAL (SELECT tk.key AS tier FROM tier tk WHERE tk.id = c.tier_id) tier_key ON true"
)


def _tier(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["definition"] = msgspec.json.decode(data["definition"])
    return data


async def lock_program(conn: Connection, program_id: UUID) -> None:
    """Tier changes of one program one at a time: the rank and threshold checks see every other tier."""
    await conn.execute("SELECT 1 FROM program WHERE id = $1 FOR UPDATE", program_id)


async def active_tiers(conn: Connection, program_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        SELECT {TIER_FIELDS}, (SELECT count(*) FROM customer c WHERE c.tier_id = t.id) AS customers
        FROM tier t WHERE t.program_id = $1 AND t.deleted_at IS NULL
        ORDER BY (t.definition ->> 'rank')::int
        """,
        program_id,
    )
    return [_tier(r) for r in rows]


async def tier_definitions(conn: Connection, program_id: UUID) -> list[dict[str, Any]]:
    """The program's tiers without the holder counts (what evaluation needs)."""
    rows = await conn.fetch(
        f"SELECT {TIER_FIELDS} FROM tier t WHERE t.program_id = $1 AND t.deleted_at IS NULL", program_id
    )
    return [_tier(r) for r in rows]


async def get_tier(conn: Connection, program_id: UUID, key: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""
        SELECT {TIER_FIELDS}, (SELECT count(*) FROM customer c WHERE c.tier_id = t.id) AS customers
        FROM tier t WHERE t.program_id = $1 AND t.key = $2 AND t.deleted_at IS NULL
        """,
        program_id,
        key,
    )
    return None if row is None else _tier(row)


async def insert_tier(
    conn: Connection, tier_id: UUID, program_id: UUID, key: str, definition: dict[str, Any], now: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO tier (id, program_id, key, version, definition, created_at, updated_at)
        VALUES ($1, $2, $3, 1, $4::jsonb, $5, $5)
        """,
        tier_id,
        program_id,
        key,
        msgspec.json.encode(definition).decode(),
        now,
    )


async def update_tier(conn: Connection, tier_id: UUID, definition: dict[str, Any], now: datetime) -> None:
    await conn.execute(
        "UPDATE tier SET definition = $2::jsonb, version = version + 1, updated_at = $3 WHERE id = $1",
        tier_id,
        msgspec.json.encode(definition).decode(),
        now,
    )


async def delete_tier(conn: Connection, tier_id: UUID, now: datetime) -> None:
    await conn.execute("UPDATE tier SET deleted_at = $2, updated_at = $2 WHERE id = $1", tier_id, now)


async def holders(conn: Connection, tier_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT id, external_id, {HOLDING_FIELDS} FROM customer WHERE tier_id = $1 ORDER BY id FOR UPDATE",
        tier_id,
    )
    return [dict(r) for r in rows]


# --- metrics ------------------------------------------------------------------------------------------------


Who = Literal["one", "some", "all"]
# Which rows: a customer's, some customers' or the program's. Customers are found by id alone (their ids
# come from this program's rows; `$1` stays typed): with `program_id = $1` beside it, a prepared
# statement's generic plan may read the program's orders by time instead of the customer's by index.
_WHO = {
    "one": "customer_id = $3::uuid AND $1::uuid IS NOT NULL",
    "some": "customer_id = ANY($3::uuid[]) AND $1::uuid IS NOT NULL",
    "all": "program_id = $1 AND $3::uuid[] IS NULL",
}


def activity_sql(*, events: bool, who: Who, bound: str = "") -> str:
    """What counts towards the metrics, one row per order or event: `$1` program, `$2` base currency,
    `$3` the customer (`one`), the customers (`some`, uuid[]) or NULL (`all`). Refunds count against
    spend, orders and points; spend counts the base currency only. `bound`: a condition on `{at}` that
    limits the scan."""
    # One text per case, not `$3 IS NULL OR ...`: a generic plan of that could never use the customer index.
    customers = _WHO[who]
    sql = f"""
        SELECT customer_id, placed_at AS at,
               CASE WHEN currency = $2::text THEN total_amount - refunded_amount ELSE 0 END AS spend,
               CASE WHEN status <> 'refunded' THEN 1 ELSE 0 END AS orders,
               points_earned - points_reversed AS points
        FROM orders
        WHERE {customers} {bound.format(at="placed_at")}
    """
    if events:
        sql += f"""
        UNION ALL
        SELECT customer_id, occurred_at, 0, 0, points FROM customer_event
        WHERE points <> 0 AND {customers} {bound.format(at="occurred_at")}
        """
    return sql


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """Per customer, the value of each metric over its window: `activity_sql`'s parameters, then one
    window start per windowed metric (`starts`, in order)."""

    sql: str
    starts: tuple[MetricKey, ...]


def metric_query(keys: Sequence[MetricKey], *, who: Who) -> MetricQuery:
    starts = tuple(k for k in keys if k.window != "lifetime")
    columns = []
    for key in keys:
        value = f"sum({key.metric})"
        if key.window != "lifetime":
            value += f" FILTER (WHERE at >= ${4 + starts.index(key)})"
        columns.append(f"coalesce({value}, 0)::bigint AS {key.column}")
    bound = ""
    if starts and len(starts) == len(keys):  # no lifetime metric: the oldest window start bounds the scan
        bound = f"AND {{at}} >= least({', '.join(f'${4 + i}::timestamptz' for i in range(len(starts)))})"
    activity = activity_sql(events=any(k.metric == "points" for k in keys), who=who, bound=bound)
    sql = f"WITH activity AS ({activity}) SELECT customer_id, {', '.join(columns)} FROM activity GROUP BY customer_id"
    return MetricQuery(sql, starts)


async def metrics_of(
    conn: Connection,
    query: MetricQuery,
    program_id: UUID,
    base_currency: str,
    customer_id: UUID,
    starts: Sequence[datetime],
) -> dict[str, int] | None:
    """One customer's metrics (`query` built for `one`); None: nothing counts yet."""
    row = await conn.fetchrow(query.sql, program_id, base_currency, customer_id, *starts)
    return None if row is None else dict(row)


async def candidates(
    conn: Connection,
    query: MetricQuery,
    qualified: tuple[str, str],
    held_rank: str,
    program_id: UUID,
    base_currency: str,
    starts: Sequence[datetime],
    now: datetime,
) -> list[dict[str, Any]]:
    """The customers whose tier could change now: those whose metrics reach a higher tier than they
    hold, those holding a warning, and those who no longer reach theirs and are due a look
    (`tier_check_after`). Everyone else is left alone; one set-based statement over the whole program.
    `qualified`: CASEs over the metric columns giving the id and the rank of the tier reached (-1: none);
    `held_rank`: a CASE giving the rank of `c.tier_id`."""
    qualified_id, qualified_rank = qualified
    rows = await conn.fetch(
        f"""
        WITH m AS ({query.sql}), r AS (
            SELECT c.id, c.external_id, {", ".join(f"c.{f}" for f in HOLDING_FIELDS.split(", "))},
                   c.tier_check_after, c.tier_downgrade_at, m.*, {qualified_id} AS qualified_id, {qualified_rank} AS qualified_rank,
                   {held_rank} AS held_rank
            FROM customer c LEFT JOIN m ON m.customer_id = c.id
            WHERE c.program_id = $1 AND (m.customer_id IS NOT NULL OR c.tier_id IS NOT NULL)
        )
        SELECT * FROM r  -- in the table's order, not by id: a chunk's rows then share pages
        WHERE qualified_rank > held_rank
           OR (qualified_rank >= held_rank AND tier_warned_at IS NOT NULL)
           OR (qualified_rank < held_rank AND (tier_check_after IS NULL OR tier_check_after <= ${4 + len(starts)}))
        """,
        program_id,
        base_currency,
        None,
        *starts,
        now,
    )
    return [dict(r) for r in rows]


async def last_qualified(
    conn: Connection,
    key: MetricKey,
    threshold: int,
    zone: str,
    program_id: UUID,
    base_currency: str,
    customer_ids: Sequence[UUID],
) -> dict[UUID, datetime]:
    """Per customer, the latest moment their metric over its window reached `threshold`, from their whole
    history. Rolling: from each activity's time `at`, the window [at, at + N months] is what counted until
    `at` left it. Calendar year: the end of the last year that reached it. (Lifetime: only now counts.)"""
    activity = activity_sql(events=key.metric == "points", who="some")
    if key.window == "rolling_months":
        months = f"INTERVAL '{int(key.months)} months'"
        sql = f"""
            WITH activity AS ({activity}), runs AS (
                SELECT customer_id, at, sum({key.metric}) OVER (
                    PARTITION BY customer_id ORDER BY at RANGE BETWEEN CURRENT ROW AND {months} FOLLOWING) AS total
                FROM activity
            )
            SELECT customer_id, max(at) + {months} AS until FROM runs WHERE total >= $4 GROUP BY customer_id
        """
    elif key.window == "calendar_year":
        sql = f"""
            WITH activity AS ({activity}), years AS (
                SELECT customer_id, extract(year FROM at AT TIME ZONE $5::text)::int AS year, sum({key.metric}) AS total
                FROM activity GROUP BY 1, 2
            )
            SELECT customer_id,
                   (make_timestamp(max(year) + 1, 1, 1, 0, 0, 0) AT TIME ZONE $5::text) - INTERVAL '1 microsecond' AS until
            FROM years WHERE total >= $4 GROUP BY customer_id
        """
    else:
        return {}
    args: list[Any] = [program_id, base_currency, list(customer_ids), threshold]
    if key.window == "calendar_year":
        args.append(zone)
    rows = await conn.fetch(sql, *args)
    return {r["customer_id"]: r["until"] for r in rows}


# --- writing changes -----------------------------------------------------------------------------------------

FAR_FUTURE = datetime(
    9999, 1, 1, tzinfo=UTC
)  # check_after of a customer nothing can happen to (manual, no end)


class Change(msgspec.Struct, kw_only=True):
    """One customer's new tier state, guarded by the state it was decided on, with its history row
    (`change` None: none, the state only records when to look again) and its event (`topic`)."""

    customer_id: UUID
    old_tier_id: UUID | None
    old_warned_at: datetime | None
    tier_id: UUID | None
    since: datetime | None
    source: str
    manual_until: datetime | None
    warned_at: datetime | None = None
    downgrade_at: datetime | None = None
    check_after: datetime | None = None
    change: str | None = None
    from_tier_id: UUID | None = None
    to_tier_id: UUID | None = None
    cause: str | None = None
    reason: str | None = None
    actor: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    topic: str | None = None
    payload: dict[str, Any] | None = None


async def apply(conn: Connection, program_id: UUID, changes: Sequence[Change], now: datetime) -> set[UUID]:
    """Write the changes whose customer still holds the state they were decided on (a concurrent order
    may have moved it: that customer is left for the next run), their history rows and their events, in
    one statement (the changes go as one JSON document: a re-evaluation writes thousands at a time).
    Returns the customers written."""
    if not changes:
        return set()
    rows = await conn.fetch(
        """
        WITH d AS (
            SELECT * FROM jsonb_to_recordset($2::jsonb) AS d(
                customer_id uuid, old_tier_id uuid, old_warned_at timestamptz, tier_id uuid, since timestamptz,
                source text, manual_until timestamptz, warned_at timestamptz, downgrade_at timestamptz,
                check_after timestamptz, change text, from_tier_id uuid, to_tier_id uuid, cause text,
                reason text, actor text, details jsonb, topic text, payload jsonb)
        ), written AS (
            UPDATE customer c
            SET tier_id = d.tier_id, tier_since = d.since, tier_source = d.source,
                tier_manual_until = d.manual_until, tier_warned_at = d.warned_at,
                tier_downgrade_at = d.downgrade_at, tier_check_after = d.check_after
            FROM d
            -- By primary key only (the ids come from this program's rows): with `program_id = $1` or a
            -- join on d alone, a prepared statement's generic plan scans the program's customers.
            WHERE c.id = ANY($4::uuid[]) AND c.id = d.customer_id
              AND c.tier_id IS NOT DISTINCT FROM d.old_tier_id
              AND c.tier_warned_at IS NOT DISTINCT FROM d.old_warned_at
            RETURNING c.id
        ), done AS (
            SELECT d.* FROM d JOIN written w ON w.id = d.customer_id
        ), history AS (
            INSERT INTO tier_change (program_id, customer_id, change, from_tier_id, to_tier_id, cause,
                                     reason, actor, details, created_at)
            SELECT $1, customer_id, change, from_tier_id, to_tier_id, cause, reason, actor,
                   details, $3
            FROM done WHERE change IS NOT NULL
        ), events AS (
            INSERT INTO outbox (id, program_id, topic, payload, created_at, available_at, attempts)
            SELECT event_id, $1, topic, jsonb_build_object('id', event_id, 'type', topic) || payload, $3, $3, 0
            FROM (SELECT gen_random_uuid() AS event_id, topic, payload FROM done WHERE topic IS NOT NULL) e
        )
        SELECT id FROM written
        """,
        program_id,
        msgspec.json.encode(changes).decode(),
        now,
        [c.customer_id for c in changes],
    )
    return {r["id"] for r in rows}


async def history(
    conn: Connection, customer_id: UUID, before: int | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT h.id, h.change, h.cause, h.reason, h.actor, h.created_at,
               f.key AS from_key, f.definition ->> 'name' AS from_name, (f.definition ->> 'rank')::int AS from_rank,
               t.key AS to_key, t.definition ->> 'name' AS to_name, (t.definition ->> 'rank')::int AS to_rank
        FROM tier_change h
        LEFT JOIN tier f ON f.id = h.from_tier_id
        LEFT JOIN tier t ON t.id = h.to_tier_id
        WHERE h.customer_id = $1 AND ($2::bigint IS NULL OR h.id < $2)
        ORDER BY h.id DESC
        LIMIT $3
        """,
        customer_id,
        before,
        limit,
    )
    return [dict(r) for r in rows]
