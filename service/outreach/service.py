"""Journey use cases: the admin CRUD (checked: steps, exits, chains without loops) and the shipped
defaults, each seeded once per program (off until a marketer turns them on, but `surprise`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec

from service.core.db import Connection, json_value
from service.core.errors import Conflict, InvalidInput, NotFound
from service.outreach import domain
from service.outreach.defaults import DEFAULT_JOURNEYS
from service.outreach.schemas import JourneyIn, JourneyOut, JourneyPatch

# A journey with its customers counted by state (one pass over its enrollments).
_SELECT = """SELECT j.id, j.key, j.version, j.enabled, j.definition, j.enabled_at, j.created_at, j.updated_at,
           n.active, n.completed, n.exited
    FROM journey j CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE e.status = 'active') AS active,
               count(*) FILTER (WHERE e.status = 'completed') AS completed,
               count(*) FILTER (WHERE e.status = 'exited') AS exited
        FROM journey_enrollment e WHERE e.journey_id = j.id
    ) n"""


def definition_json(journey: JourneyIn) -> str:
    """What the sweeps read: the journey as given plus each step's offset from the trigger."""
    return msgspec.json.encode(
        {**msgspec.to_builtins(journey), "offsets": domain.step_offsets(journey.steps)}
    ).decode()


def _out(row: dict[str, Any]) -> JourneyOut:
    definition = json_value(row["definition"])
    journey = msgspec.convert({k: v for k, v in definition.items() if k != "offsets"}, JourneyIn)
    return JourneyOut(
        key=row["key"],
        name=journey.name,
        version=row["version"],
        enabled=row["enabled"],
        trigger=journey.trigger,
        steps=journey.steps,
        exit_on=journey.exit_on,
        enabled_at=row["enabled_at"],
        active=row["active"],
        completed=row["completed"],
        exited=row["exited"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_SHIPPED_KEYS = [journey.key for journey in DEFAULT_JOURNEYS]
# Whether the program has had every shipped journey (a row with its key, deleted or not): one query on
# every journey read, as before there was a journey shipped later than the others. A live one is found
# in the unique index on live keys; only a key without one looks for a deleted row.
_HAD_ALL = """SELECT NOT EXISTS (
    SELECT 1 FROM unnest($2::text[]) AS shipped(key)
    WHERE NOT EXISTS (SELECT 1 FROM journey j
                      WHERE j.program_id = $1 AND j.key = shipped.key AND j.deleted_at IS NULL)
      AND NOT EXISTS (SELECT 1 FROM journey j
                      WHERE j.program_id = $1 AND j.key = shipped.key AND j.deleted_at IS NOT NULL))"""


async def ensure_defaults(conn: Connection, program_id: UUID, now: datetime) -> None:
    """The shipped journeys, each once: a program gets those whose key it never had, and one that
    deleted a shipped journey (or changed it) keeps its own. A journey shipped later (`surprise`) so
    reaches programs that already had the others."""
    if await conn.fetchval(_HAD_ALL, program_id, _SHIPPED_KEYS):
        return
    await conn.execute(
        "SELECT 1 FROM program WHERE id = $1 FOR UPDATE", program_id
    )  # two first calls: one seeds
    for journey in DEFAULT_JOURNEYS:
        await _insert(conn, program_id, journey, now, unless_had=True)


async def _insert(
    conn: Connection, program_id: UUID, journey: JourneyIn, now: datetime, *, unless_had: bool = False
) -> bool:
    """`unless_had`: not if the program ever had a journey with the key (a shipped one it deleted)."""
    inserted = await conn.fetchval(
        """
        INSERT INTO journey (id, program_id, key, version, enabled, trigger_kind, definition, enabled_at, created_at, updated_at)
        SELECT $1::uuid, $2::uuid, $3::text, 1, $4::boolean, $5::text, $6::jsonb,
               CASE WHEN $4 THEN $7::timestamptz END, $7, $7
        WHERE NOT ($8::boolean AND EXISTS (SELECT 1 FROM journey WHERE program_id = $2 AND key = $3))
        ON CONFLICT (program_id, key) WHERE deleted_at IS NULL DO NOTHING RETURNING id
        """,
        uuid4(),
        program_id,
        journey.key,
        journey.enabled,
        journey.trigger.kind,
        definition_json(journey),
        now,
        unless_had,
    )
    return inserted is not None


async def _check(conn: Connection, program_id: UUID, journey: JourneyIn) -> None:
    found = domain.problems(journey)
    if found:
        field, problem = found[0]
        raise InvalidInput(problem, field=field)
    await _check_rewards(conn, program_id, journey)
    rows = await conn.fetch(
        "SELECT key, definition -> 'trigger' ->> 'journey' AS after FROM journey "
        "WHERE program_id = $1 AND deleted_at IS NULL AND trigger_kind = 'journey_completed'",
        program_id,
    )
    chain: dict[str, str | None] = {r["key"]: r["after"] for r in rows}
    chain[journey.key] = journey.trigger.journey if journey.trigger.kind == "journey_completed" else None
    if journey.trigger.kind == "journey_completed":
        exists = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM journey WHERE program_id = $1 AND key = $2 AND deleted_at IS NULL)",
            program_id,
            journey.trigger.journey,
        )
        if not exists and journey.trigger.journey != journey.key:
            raise InvalidInput(f"no journey {journey.trigger.journey!r} to follow", field="trigger.journey")
    cycle = domain.find_cycle(chain)
    if cycle:
        raise InvalidInput(
            f"journeys would follow each other in a loop: {' -> '.join(cycle)}", field="trigger.journey"
        )


async def _check_rewards(conn: Connection, program_id: UUID, journey: JourneyIn) -> None:
    """A step's reward is one of the program's (any state: an inactive one gives no code when the step
    is due, and the message goes without it)."""
    wanted = [(index, step.reward) for index, step in enumerate(journey.steps) if step.reward is not None]
    if not wanted:
        return
    known = {
        row["id"]
        for row in await conn.fetch(
            "SELECT id FROM reward WHERE program_id = $1 AND id = ANY($2::uuid[])",
            program_id,
            [reward for _, reward in wanted],
        )
    }
    for index, reward in wanted:
        if reward not in known:
            raise InvalidInput(f"no reward {reward} in this program", field=f"steps[{index}].reward")


async def _row(conn: Connection, program_id: UUID, key: str, *, lock: bool = False) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"{_SELECT} WHERE j.program_id = $1 AND j.key = $2 AND j.deleted_at IS NULL"
        + (" FOR UPDATE OF j" if lock else ""),
        program_id,
        key,
    )
    if row is None:
        raise NotFound(f"no journey {key!r} in this program", field="path:key")
    return dict(row)


async def create(conn: Connection, program_id: UUID, data: JourneyIn, now: datetime) -> JourneyOut:
    await ensure_defaults(conn, program_id, now)
    await _check(conn, program_id, data)
    if not await _insert(conn, program_id, data, now):
        raise Conflict(f"journey {data.key!r} already exists: change it with PUT", field="key")
    return _out(await _row(conn, program_id, data.key))


async def replace(conn: Connection, program_id: UUID, key: str, data: JourneyIn, now: datetime) -> JourneyOut:
    """A new version; customers already in it go on with the new steps from the step they reached."""
    await ensure_defaults(conn, program_id, now)
    row = await _row(conn, program_id, key, lock=True)
    if data.key != key:
        raise InvalidInput(f"the key is {key!r} (a journey's key does not change)", field="key")
    await _check(conn, program_id, data)
    await conn.execute(
        """
        UPDATE journey SET version = version + 1, enabled = $2, trigger_kind = $3, definition = $4::jsonb,
               enabled_at = CASE WHEN $2 AND NOT enabled THEN $5 WHEN $2 THEN enabled_at END, updated_at = $5
        WHERE id = $1
        """,
        row["id"],
        data.enabled,
        data.trigger.kind,
        definition_json(data),
        now,
    )
    return _out(await _row(conn, program_id, key))


async def set_enabled(
    conn: Connection, program_id: UUID, key: str, data: JourneyPatch, now: datetime
) -> JourneyOut:
    """On: only triggers from now on enter (nobody is swept in for the past). Off: due steps stop."""
    await ensure_defaults(conn, program_id, now)
    row = await _row(conn, program_id, key, lock=True)
    if row["enabled"] != data.enabled:
        await conn.execute(
            "UPDATE journey SET enabled = $2, enabled_at = CASE WHEN $2 THEN $3::timestamptz END, updated_at = $3 WHERE id = $1",
            row["id"],
            data.enabled,
            now,
        )
    return _out(await _row(conn, program_id, key))


async def delete(conn: Connection, program_id: UUID, key: str, now: datetime) -> None:
    row = await _row(conn, program_id, key, lock=True)
    followers = await conn.fetch(
        "SELECT key FROM journey WHERE program_id = $1 AND deleted_at IS NULL AND definition -> 'trigger' ->> 'journey' = $2",
        program_id,
        key,
    )
    if followers:
        raise Conflict(f"journey {followers[0]['key']!r} follows {key!r}: change it first", field="path:key")
    await conn.execute(
        "UPDATE journey SET deleted_at = $2, enabled = false, updated_at = $2 WHERE id = $1", row["id"], now
    )
    await conn.execute(
        "UPDATE journey_enrollment SET status = 'exited', exit_reason = 'the journey was deleted', updated_at = $2 "
        "WHERE journey_id = $1 AND status = 'active'",
        row["id"],
        now,
    )


async def list_all(conn: Connection, program_id: UUID, now: datetime) -> list[JourneyOut]:
    await ensure_defaults(conn, program_id, now)
    rows = await conn.fetch(
        f"{_SELECT} WHERE j.program_id = $1 AND j.deleted_at IS NULL ORDER BY j.created_at, j.key",
        program_id,
    )
    return [_out(dict(r)) for r in rows]


async def get(conn: Connection, program_id: UUID, key: str, now: datetime) -> JourneyOut:
    await ensure_defaults(conn, program_id, now)
    return _out(await _row(conn, program_id, key))
