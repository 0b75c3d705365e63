from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from service.core.db import Connection
from service.orders.domain import PricedLine, PricedOrder

ORDER_FIELDS = """o.id, o.external_id, c.external_id AS customer_external_id, o.customer_id, o.currency, o.placed_at,
    o.status, o.subtotal_amount, o.discount_amount, o.shipping_amount, o.total_amount, o.eligible_amount,
    o.points_earned, o.earn_explanation, o.refunded_amount, o.refunded_shipping_amount, o.points_reversed,
    o.attributes, o.created_at"""
LINE_FIELDS = """sku, name, category, quantity, unit_amount, line_amount, discount_amount, eligible_amount, points,
    refunded_quantity, refunded_amount, refunded_points"""


async def insert_order(
    conn: Connection,
    *,
    order_id: UUID,
    program_id: UUID,
    customer_id: UUID,
    external_id: str,
    currency: str,
    placed_at: datetime,
    priced: PricedOrder,
    discount_amount: int,
    shipping_amount: int,
    total_amount: int,
    names: list[str | None],
    categories: list[str | None],
    attributes: dict[str, Any],
    now: datetime,
) -> bool:
    """Insert the order and its lines; False when the program already has an order with this external id."""
    inserted = await conn.fetchval(
        """
        WITH o AS (
            INSERT INTO orders (id, program_id, customer_id, external_id, currency, placed_at, subtotal_amount,
                                discount_amount, shipping_amount, total_amount, eligible_amount, points_earned,
                                refunded_amount, refunded_shipping_amount, points_reversed, status,
                                earn_explanation, created_at, attributes)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, 0, 0, 'placed', $13, $14, $25::jsonb)
            ON CONFLICT (program_id, external_id) DO NOTHING
            RETURNING id
        ), l AS (
            INSERT INTO order_line (id, program_id, order_id, position, sku, name, category, quantity, unit_amount,
                                    line_amount, discount_amount, eligible_amount, points, refunded_quantity,
                                    refunded_amount, refunded_points)
            SELECT gen_random_uuid(), $2, o.id, x.position, x.sku, x.name, x.category, x.quantity, x.unit_amount,
                   x.line_amount, x.discount_amount, x.eligible_amount, x.points, 0, 0, 0
            FROM o, unnest($15::int[], $16::text[], $17::text[], $18::text[], $19::int[], $20::bigint[],
                           $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[])
                 AS x(position, sku, name, category, quantity, unit_amount, line_amount, discount_amount,
                      eligible_amount, points)
        )
        SELECT id FROM o
        """,
        order_id,
        program_id,
        customer_id,
        external_id,
        currency,
        placed_at,
        priced.subtotal_amount,
        discount_amount,
        shipping_amount,
        total_amount,
        priced.eligible_amount,
        priced.points,
        priced.explanation,
        now,
        list(range(len(priced.lines))),
        [line.sku for line in priced.lines],
        names,
        categories,
        [line.quantity for line in priced.lines],
        [line.unit_amount for line in priced.lines],
        [line.line_amount for line in priced.lines],
        [line.discount_amount for line in priced.lines],
        [line.eligible_amount for line in priced.lines],
        [line.points for line in priced.lines],
        msgspec.json.encode(attributes).decode(),
    )
    return inserted is not None


async def get_order(
    conn: Connection, program_id: UUID, external_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"""
        SELECT {ORDER_FIELDS} FROM orders o JOIN customer c ON c.id = o.customer_id
        WHERE o.program_id = $1 AND o.external_id = $2 {"FOR UPDATE OF o" if lock else ""}
        """,
        program_id,
        external_id,
    )
    return None if row is None else dict(row)


async def get_lines(conn: Connection, order_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {LINE_FIELDS} FROM order_line WHERE order_id = $1 ORDER BY position", order_id
    )
    return [dict(r) for r in rows]


def customer_stats_lateral(customer_id: str, before: str | None = None) -> str:
    """Order count, last order date and lifetime spend (net of refunds, in the program's base currency) as
    a LATERAL join on `customer_id` (a SQL expression); with `before` (one too), of the orders placed
    before it: the customer as they were at a past moment."""
    placed = "" if before is None else f" AND o.placed_at < {before}"
    return f"""
    LEFT JOIN LATERAL (
        SELECT count(*) AS order_count, max(o.placed_at) AS last_order_at,
               coalesce(sum(o.total_amount - o.refunded_amount) FILTER (WHERE o.currency = p.base_currency), 0)
                   AS lifetime_spend
        FROM orders o JOIN program p ON p.id = o.program_id WHERE o.customer_id = {customer_id}{placed}
    ) order_stats ON true
    """


REFUND_FIELDS = """id, external_id, request_hash, amount, shipping_amount, points_reversed, debt_recorded, lines,
    created_at"""


async def get_refund(conn: Connection, order_id: UUID, external_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {REFUND_FIELDS} FROM refund WHERE order_id = $1 AND external_id = $2", order_id, external_id
    )
    if row is None:
        return None
    data = dict(row)
    data["lines"] = msgspec.json.decode(data["lines"])
    return data


async def insert_refund(
    conn: Connection,
    *,
    refund_id: UUID,
    program_id: UUID,
    order_id: UUID,
    external_id: str,
    request_hash: str,
    amount: int,
    shipping_amount: int,
    points: int,
    lines: list[dict[str, Any]],
    now: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO refund (id, program_id, order_id, external_id, request_hash, amount, shipping_amount,
                            points_reversed, debt_recorded, lines, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9::jsonb, $10)
        """,
        refund_id,
        program_id,
        order_id,
        external_id,
        request_hash,
        amount,
        shipping_amount,
        points,
        msgspec.json.encode(lines).decode(),
        now,
    )


async def record_refund_debt(conn: Connection, refund_id: UUID, debt: int) -> None:
    await conn.execute("UPDATE refund SET debt_recorded = $2 WHERE id = $1", refund_id, debt)


async def apply_refund(
    conn: Connection,
    order_id: UUID,
    lines: tuple[PricedLine, ...],
    amount: int,
    shipping: int,
    points: int,
    fully_refunded: bool,
) -> str:
    """Write the lines' refunded figures and the order's totals; returns the order's new status."""
    status: str = await conn.fetchval(
        """
        WITH lines AS (
            UPDATE order_line l SET refunded_quantity = x.qty, refunded_amount = x.amount, refunded_points = x.points
            FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS x(sku, qty, amount, points)
            WHERE l.order_id = $1 AND l.sku = x.sku
        )
        UPDATE orders SET refunded_amount = refunded_amount + $6,
                          refunded_shipping_amount = refunded_shipping_amount + $7,
                          points_reversed = points_reversed + $8,
                          status = CASE WHEN $9 THEN 'refunded' ELSE 'partially_refunded' END
        WHERE id = $1 RETURNING status
        """,
        order_id,
        [line.sku for line in lines],
        [line.refunded_quantity for line in lines],
        [line.refunded_amount for line in lines],
        [line.refunded_points for line in lines],
        amount,
        shipping,
        points,
        fully_refunded,
    )
    return status


async def replay_orders(
    conn: Connection,
    program_id: UUID,
    start: datetime,
    end: datetime,
    base_currency: str,
    tier_sql: str,
    upgrade_sql: str = "NULL::timestamptz",
) -> list[Any]:
    """The orders placed in [start, end), oldest first, each with what its customer had ordered before it
    (count, last order, spend in the base currency net of refunds) and `tier_sql` / `upgrade_sql` as `tier`
    / `upgraded_at` (expressions the tiers feature publishes on `h.customer_id` and `h.placed_at`): for the
    rules' and the gift rules' simulations."""
    await conn.execute("SET LOCAL work_mem = '64MB'")  # the sorts of 100,000 orders stay in memory
    return await conn.fetch(
        f"""
        SELECT h.id, h.external_id, h.customer_id, c.external_id AS customer_external_id, c.birthday, c.locale,
               c.marketing_consent,
               c.created_at, h.currency, h.placed_at, h.total_amount, h.subtotal_amount, h.discount_amount,
               h.shipping_amount, h.eligible_amount, h.attributes::text AS attributes,
               h.order_count, h.last_order_at, h.lifetime_spend,
               {tier_sql} AS tier, {upgrade_sql} AS upgraded_at
        FROM (
            -- Every earlier order of the period's customers, for the counts; the period's kept below.
            SELECT o.id, o.external_id, o.customer_id, o.currency, o.placed_at, o.total_amount, o.subtotal_amount,
                   o.discount_amount, o.shipping_amount, o.eligible_amount, o.attributes,
                   count(*) OVER w - 1 AS order_count,
                   lag(o.placed_at) OVER w AS last_order_at,
                   sum(CASE WHEN o.currency = $4 THEN o.total_amount - o.refunded_amount ELSE 0 END) OVER w
                     - CASE WHEN o.currency = $4 THEN o.total_amount - o.refunded_amount ELSE 0 END
                     AS lifetime_spend
            FROM orders o
            WHERE o.program_id = $1 AND o.placed_at < $3 AND o.customer_id IN (
                SELECT customer_id FROM orders WHERE program_id = $1 AND placed_at >= $2 AND placed_at < $3)
            WINDOW w AS (PARTITION BY o.customer_id ORDER BY o.placed_at, o.id)
        ) h
        JOIN customer c ON c.id = h.customer_id
        WHERE h.placed_at >= $2
        ORDER BY h.placed_at, h.id
        """,
        program_id,
        start,
        end,
        base_currency,
    )


async def replay_lines(
    conn: Connection, program_id: UUID, start: datetime, end: datetime
) -> dict[UUID, list[tuple[Any, ...]]]:
    """The lines of the orders placed in [start, end), by order id, in their order: (sku, category, name,
    quantity, unit amount, eligible amount). Unsorted in SQL: a few lines per order sort cheaper here."""
    lines: dict[UUID, list[tuple[Any, ...]]] = {}
    for line in await conn.fetch(
        """
        SELECT l.order_id, l.position, l.sku, l.category, l.name, l.quantity, l.unit_amount, l.eligible_amount
        FROM order_line l JOIN orders o ON o.id = l.order_id
        WHERE o.program_id = $1 AND o.placed_at >= $2 AND o.placed_at < $3
        """,
        program_id,
        start,
        end,
    ):
        values = tuple(line)
        lines.setdefault(values[0], []).append(values[1:])
    for order_lines in lines.values():
        if len(order_lines) > 1:
            order_lines.sort()
    return {order_id: [line[1:] for line in order_lines] for order_id, order_lines in lines.items()}


async def last_refund_at(
    conn: Connection, customer_id: UUID, by: datetime, besides: UUID | None
) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT max(r.created_at) FROM refund r JOIN orders o ON o.id = r.order_id "
        "WHERE o.customer_id = $1 AND r.created_at <= $2 AND r.id IS DISTINCT FROM $3",
        customer_id,
        by,
        besides,
    )
    return value


# --- for the gift simulation (gifts.simulation) -----------------------------------------------------------


async def refunds_between(conn: Connection, program_id: UUID, start: datetime, end: datetime) -> list[Any]:
    """The refunds recorded in [start, end), oldest first: id, the order's customer_id, created_at."""
    return await conn.fetch(
        """
        SELECT r.id, o.customer_id, r.created_at FROM refund r JOIN orders o ON o.id = r.order_id
        WHERE r.program_id = $1 AND r.created_at >= $2 AND r.created_at < $3
        ORDER BY r.created_at, r.id
        """,
        program_id,
        start,
        end,
    )


async def first_orders(conn: Connection, program_id: UUID, before: datetime) -> list[Any]:
    """Each customer's first order placed before `before`: customer_id, first_at."""
    return await conn.fetch(
        """
        SELECT customer_id, min(placed_at) AS first_at FROM orders
        WHERE program_id = $1 AND placed_at < $2 GROUP BY customer_id
        """,
        program_id,
        before,
    )
