"""What other features may read of the tiers' tables (`tier`, `customer_tier`, `tier_change`): SQL
fragments, all of them here. Nobody else names those tables; tiers may change them behind these.

A customer's tier state has no row until it has some (a customer without one holds no tier): every
fragment is an outer join, so it adds its columns, NULL or the defaults, and never drops the customer.
Joined to a customer row the columns keep the prefix they had as customer columns (`tier_since`, ...)."""

from __future__ import annotations

# customer_tier column -> the name it has in a customer row.
HOLDING = {
    "tier_id": "tier_id",
    "since": "tier_since",
    "source": "tier_source",
    "manual_until": "tier_manual_until",
    "warned_at": "tier_warned_at",
    "downgrade_at": "tier_downgrade_at",
    "check_after": "tier_check_after",
}


def holding_columns(alias: str) -> str:
    """The tier state of `alias` (a customer_tier row, or NULLs where there is none) under its customer-row
    names; the source of no row is the default, `earned`."""
    return ", ".join(
        f"coalesce({alias}.source, 'earned') AS {name}"
        if column == "source"
        else f"{alias}.{column} AS {name}"
        for column, name in HOLDING.items()
    )


# On the customer row `c` (LATERAL, with the customer's upsert or look-up: no round trip of its own): the
# tier held, by key as `tier` (the rules' `customer.tier` fact), and its state under the names above (what
# `tiers.after_activity` and the customer's standing decide on).
TIER_LATERAL = f"""
    LEFT JOIN LATERAL (
        SELECT {holding_columns("ct")}, tk.key AS tier
        FROM customer_tier ct LEFT JOIN tier tk ON tk.id = ct.tier_id
        WHERE ct.customer_id = c.id
    ) tier_state ON true
"""

# On the customer row `c`: the name of the tier held, as `tier_name` (what a message says of it).
TIER_NAME_LATERAL = """
    LEFT JOIN LATERAL (
        SELECT tn.definition ->> 'name' AS tier_name
        FROM customer_tier ct JOIN tier tn ON tn.id = ct.tier_id
        WHERE ct.customer_id = c.id
    ) held_tier_name ON true
"""


def tier_key_held_at(customer_id: str, at: str) -> str:
    """A scalar subquery: the key of the tier the customer `customer_id` held just before `at` (SQL
    expressions), from the tier history — for replaying past orders as the rules saw them. A change
    stamped at the order's own instant is the one the order caused, so it is not counted."""
    return f"""(SELECT t.key FROM tier_change x LEFT JOIN tier t ON t.id = x.to_tier_id
        WHERE x.customer_id = {customer_id} AND x.created_at < {at}
          AND x.change IN ('upgrade', 'downgrade', 'manual', 'moved')
        ORDER BY x.id DESC LIMIT 1)"""


# On the customer row `c`: the rank of the tier held, as `tier_rank` (NULL: none) — what a reward's
# minimum tier is compared with.
TIER_RANK_LATERAL = """
    LEFT JOIN LATERAL (
        SELECT (tr.definition ->> 'rank')::int AS tier_rank
        FROM customer_tier ct JOIN tier tr ON tr.id = ct.tier_id
        WHERE ct.customer_id = c.id
    ) held_tier_rank ON true
"""


def tiers_select(program_id: str) -> str:
    """A query of the program's tiers (deleted ones aside): key, name, rank."""
    return f"""SELECT key, definition ->> 'name' AS name, (definition ->> 'rank')::int AS rank
        FROM tier WHERE program_id = {program_id} AND deleted_at IS NULL"""


def tier_upgraded_at(customer_id: str, at: str) -> str:
    """A scalar subquery: when the customer `customer_id` last moved up before `at` (SQL expressions) — to a
    tier from none, or to a tier of a higher rank — from the tier history, for replaying past orders (the
    gift trigger `first_order_after_upgrade`). A change stamped at `at` itself is not counted, as in
    `tier_key_held_at`."""
    return f"""(SELECT x.created_at FROM tier_change x
        JOIN tier t ON t.id = x.to_tier_id LEFT JOIN tier f ON f.id = x.from_tier_id
        WHERE x.customer_id = {customer_id} AND x.created_at < {at}
          AND x.change IN ('upgrade', 'downgrade', 'manual', 'moved')
          AND (f.id IS NULL OR (t.definition ->> 'rank')::int > (f.definition ->> 'rank')::int)
        ORDER BY x.id DESC LIMIT 1)"""
