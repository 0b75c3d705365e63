from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from service.core.db import Connection
from service.outbox.service import insert_events
from service.tiers.domain import MetricKey
from service.tiers.published import holding_columns, tier_upgraded_at

TIER_FIELDS = "t.id, t.key, t.version, t.definition, t.created_at, t.updated_at"
# How many customers hold the tier `t` (by the program's index on customer_tier: program, tier).
_HOLDERS = "(SELECT count(*) FROM customer_tier ct WHERE ct.program_id = t.program_id AND ct.tier_id = t.id)"


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
        SELECT {TIER_FIELDS}, {_HOLDERS} AS customers
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
        SELECT {TIER_FIELDS}, {_HOLDERS} AS customers
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


async def holders(conn: Connection, program_id: UUID, tier_id: UUID) -> list[dict[str, Any]]:
    """The tier's holders with their tier state, their tier rows locked until commit (in id order)."""
    rows = await conn.fetch(
        f"""
        SELECT c.id, c.external_id, {holding_columns("ct")}
        FROM customer_tier ct JOIN customer c ON c.id = ct.customer_id
        WHERE ct.program_id = $1 AND ct.tier_id = $2 ORDER BY ct.customer_id FOR UPDATE OF ct
        """,
        program_id,
        tier_id,
    )
    return [dict(r) for r in rows]


async def holding(conn: Connection, customer_id: UUID) -> dict[str, Any]:
    """The customer's tier state as it stands now (a statement of its own: what committed meanwhile)."""
    row = await conn.fetchrow(
        f"""
        SELECT {holding_columns("ct")}
        FROM (SELECT $1::uuid AS id) k LEFT JOIN customer_tier ct ON ct.customer_id = k.id
        """,
        customer_id,
    )
    assert row is not None
    return dict(row)


async def lock_holding(conn: Connection, program_id: UUID, customer_id: UUID) -> dict[str, Any]:
    """Create-or-lock the customer's tier row (a row with no tier means none): its state as it stands,
    held until commit, so a change decided on it cannot lose to a re-evaluation meanwhile."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO customer_tier AS ct (customer_id, program_id) VALUES ($1, $2)
        ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id
        RETURNING {holding_columns("ct")}
        """,
        customer_id,
        program_id,
    )
    assert row is not None
    return dict(row)


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
    (`tier_check_after`). Everyone else is left alone; one set-based statement over the whole program:
    the customers with activity (`m`) and the program's tier rows (`h`), never the customer table but
    for the external ids of the rows kept. `qualified`: CASEs over the metric columns giving the id and
    the rank of the tier reached (-1: none); `held_rank`: a CASE giving the rank of `h.tier_id`."""
    qualified_id, qualified_rank = qualified
    rows = await conn.fetch(
        f"""
        WITH m AS ({query.sql}), r AS (
            SELECT coalesce(m.customer_id, h.customer_id) AS id, {holding_columns("h")}, m.*,
                   {qualified_id} AS qualified_id, {qualified_rank} AS qualified_rank, {held_rank} AS held_rank
            FROM m FULL JOIN (SELECT * FROM customer_tier WHERE program_id = $1) h ON h.customer_id = m.customer_id
            WHERE m.customer_id IS NOT NULL OR h.tier_id IS NOT NULL
        )
        SELECT r.*, c.external_id FROM r JOIN customer c ON c.id = r.id
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


# The events of the changes written (apply's `done`; $1 the program, $3 now), through the outbox's emit.
_CHANGE_EVENTS = insert_events(
    "SELECT $1::uuid AS program_id, topic, payload FROM done WHERE topic IS NOT NULL", at="$3"
)


async def apply(conn: Connection, program_id: UUID, changes: Sequence[Change], now: datetime) -> set[UUID]:
    """Write the changes whose customer still holds the state they were decided on (a concurrent order
    may have moved it: that customer is left for the next run), their history rows and their events, in
    one statement (the changes go as one JSON document: a re-evaluation writes thousands at a time): an
    update of the customers' tier rows, a new row for those who have none yet. Returns the customers
    written."""
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
        ), updated AS (
            UPDATE customer_tier ct
            SET tier_id = d.tier_id, since = d.since, source = d.source, manual_until = d.manual_until,
                warned_at = d.warned_at, downgrade_at = d.downgrade_at, check_after = d.check_after
            FROM d
            -- By primary key only (the ids come from this program's rows): with `program_id = $1` or a
            -- join on d alone, a prepared statement's generic plan scans the program's rows.
            WHERE ct.customer_id = ANY($4::uuid[]) AND ct.customer_id = d.customer_id
              AND ct.tier_id IS NOT DISTINCT FROM d.old_tier_id
              AND ct.warned_at IS NOT DISTINCT FROM d.old_warned_at
            RETURNING ct.customer_id
        ), inserted AS (
            -- No row is no tier and no warning. A customer who has a row conflicts and is left to the
            -- update above (also when its guard failed, or another transaction inserted the row meanwhile:
            -- then nothing is written, as when the state moved under an update).
            INSERT INTO customer_tier (customer_id, program_id, tier_id, since, source, manual_until, warned_at,
                                       downgrade_at, check_after)
            SELECT d.customer_id, $1, d.tier_id, d.since, d.source, d.manual_until, d.warned_at,
                   d.downgrade_at, d.check_after
            FROM d
            WHERE d.old_tier_id IS NULL AND d.old_warned_at IS NULL
            ON CONFLICT (customer_id) DO NOTHING
            RETURNING customer_id
        ), written AS (
            SELECT customer_id AS id FROM updated UNION ALL SELECT customer_id FROM inserted
        ), done AS (
            SELECT d.* FROM d JOIN written w ON w.id = d.customer_id
        ), history AS (
            INSERT INTO tier_change (program_id, customer_id, change, from_tier_id, to_tier_id, cause,
                                     reason, actor, details, created_at)
            SELECT $1, customer_id, change, from_tier_id, to_tier_id, cause, reason, actor,
                   details, $3
            FROM done WHERE change IS NOT NULL
        ), events AS ("""
        + _CHANGE_EVENTS
        + """)
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


async def upgraded_before(conn: Connection, customer_id: UUID, at: datetime) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        f"SELECT {tier_upgraded_at('$1::uuid', '$2::timestamptz')}", customer_id, at
    )
    return value
