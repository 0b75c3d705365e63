"""Messaging use cases: settings, template overrides (checked at save), previews, the message log,
the suppression list, one-click unsubscribe; and `prepare`, which turns claimed messages into decisions
and rendered e-mails (the send sweep and its benchmark share it)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from time import thread_time
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.locales import bcp47
from service.core.pagination import decode_cursor, encode_cursor
from service.customers import service as customers
from service.messaging import delivery, domain, rendering, repository
from service.messaging.bounds import RenderLimit
from service.messaging.catalogue import LOCALES, MESSAGE_TYPES
from service.messaging.locales import choose_locale
from service.messaging.processes import RENDERERS
from service.messaging.rendering import CompiledTemplate, TemplateProblem
from service.messaging.schemas import (
    DraftPreviewIn,
    MessageList,
    MessageOut,
    MessageTypeList,
    MessageTypeOut,
    MessagingSettings,
    PreviewIn,
    PreviewOut,
    SuppressionIn,
    SuppressionList,
    SuppressionOut,
    TemplateCreate,
    TemplateOut,
    TemplateParts,
    TemplateVersionList,
    TemplateVersionOut,
)
from service.messaging.variables import code_source, customer_vars, message_vars
from service.outbox.service import Event, emit
from service.programs import service as programs
from service.rewards import service as rewards

# A program's templates get this much render CPU per batch (a message at most bounds.MAX_CPU_SECONDS);
# its other messages wait a little, so one program's slow template cannot hold another's mail.
PROGRAM_RENDER_SECONDS_PER_BATCH = 2.0
RENDER_TIME_DEFERRAL = timedelta(minutes=1)

# --- settings ---


async def get_settings(conn: Connection, program_id: UUID) -> MessagingSettings:
    return (await repository.settings_of(conn, [program_id]))[program_id]


async def put_settings(
    conn: Connection, program_id: UUID, data: MessagingSettings, now: datetime
) -> MessagingSettings:
    if data.quiet_hours and data.quiet_hours.start == data.quiet_hours.end:
        raise InvalidInput(
            "quiet hours must not start and end at the same time (use null for none)", field="quiet_hours"
        )
    await repository.save_settings(conn, program_id, data, now)
    return data


def guardrails(settings: MessagingSettings) -> domain.Guardrails:
    quiet = settings.quiet_hours
    return domain.Guardrails(
        quiet_hours=domain.QuietHours(time.fromisoformat(quiet.start), time.fromisoformat(quiet.end))
        if quiet
        else None,
        marketing_cap=settings.marketing_cap,
        marketing_cap_days=settings.marketing_cap_days,
        marketing_min_gap=timedelta(hours=settings.marketing_min_gap_hours),
    )


# --- templates ---


def message_types() -> MessageTypeList:
    return MessageTypeList(
        items=[
            MessageTypeOut(
                key=t.key,
                category=t.category,
                description=t.description,
                variables=sorted(t.variables | {"customer", "program", "unsubscribe_url"}),
                locales=list(LOCALES),
            )
            for t in MESSAGE_TYPES.values()
        ]
    )


def _template_out(row: dict[str, Any]) -> TemplateOut:
    return TemplateOut(
        id=str(row["id"]),
        message_type=row["message_type"],
        locale=row["locale"],
        version=row["version"],
        subject=row["subject"],
        text=row["text_body"],
        html=row["html_body"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _sources(parts: TemplateParts) -> dict[str, str]:
    return {"subject": parts.subject, "text": parts.text, "html": parts.html}


def _refused(problem: TemplateProblem | RenderLimit) -> InvalidInput:
    """A template that does not render: 422 naming the part and line of the first problem, and the
    limit when it went over one (a render process stopped for it names no part)."""
    if isinstance(problem, RenderLimit):
        return InvalidInput(f"the template does not render: {problem.detail}", extra={"limit": problem.limit})
    return InvalidInput(
        f"the {problem.part} does not render{f' (line {problem.line})' if problem.line else ''}: {problem.error}",
        field=problem.part,
        extra={"line": problem.line, "error": problem.error}
        | ({"limit": problem.limit} if problem.limit else {}),
    )


async def _checked(program_id: UUID, message_type: str, locale: str, parts: TemplateParts) -> None:
    """Save-time gate, in a render process and within the render limits."""
    try:
        await rendering.isolated(rendering.check_only, message_type, locale, _sources(parts))
    except (TemplateProblem, RenderLimit) as problem:
        raise _refused(problem) from None


def _parse_id(template_id: str) -> UUID:
    try:
        return UUID(template_id)
    except ValueError:
        raise NotFound(f"no template {template_id!r}", field="path:template_id") from None


async def _template_row(
    conn: Connection, program_id: UUID, template_id: str, *, lock: bool = False
) -> dict[str, Any]:
    row = await repository.template(conn, program_id, _parse_id(template_id), lock=lock)
    if row is None:
        raise NotFound(f"no template {template_id!r}", field="path:template_id")
    return row


async def create_template(
    conn: Connection, program_id: UUID, data: TemplateCreate, now: datetime
) -> TemplateOut:
    await _checked(program_id, data.message_type, data.locale, data)
    row = {
        "id": uuid4(),
        "program_id": program_id,
        "message_type": data.message_type,
        "locale": data.locale,
        "version": 1,
        "subject": data.subject,
        "text_body": data.text,
        "html_body": data.html,
        "created_at": now,
        "updated_at": now,
    }
    inserted = await conn.fetchval(
        """
        INSERT INTO message_template (id, program_id, message_type, locale, version, subject, text_body, html_body,
                                      created_at, updated_at)
        VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $8)
        ON CONFLICT (program_id, message_type, locale) WHERE deleted_at IS NULL DO NOTHING RETURNING id
        """,
        row["id"],
        program_id,
        data.message_type,
        data.locale,
        data.subject,
        data.text,
        data.html,
        now,
    )
    if inserted is None:
        raise Conflict(
            f"the program already has a {data.message_type} template in {data.locale!r}: change it with PUT",
            field="message_type",
        )
    await repository.insert_template_version(conn, row)
    return _template_out(row)


async def update_template(
    conn: Connection, program_id: UUID, template_id: str, data: TemplateParts, now: datetime
) -> TemplateOut:
    row = await _template_row(conn, program_id, template_id, lock=True)
    await _checked(program_id, row["message_type"], row["locale"], data)
    row.update(
        version=row["version"] + 1,
        subject=data.subject,
        text_body=data.text,
        html_body=data.html,
        updated_at=now,
    )
    await conn.execute(
        "UPDATE message_template SET version = $2, subject = $3, text_body = $4, html_body = $5, updated_at = $6 WHERE id = $1",
        row["id"],
        row["version"],
        data.subject,
        data.text,
        data.html,
        now,
    )
    await repository.insert_template_version(conn, row)
    return _template_out(row)


async def delete_template(conn: Connection, program_id: UUID, template_id: str, now: datetime) -> None:
    """The type goes back to the shipped default in that locale; the versions stay for the record."""
    row = await _template_row(conn, program_id, template_id, lock=True)
    await conn.execute("UPDATE message_template SET deleted_at = $2 WHERE id = $1", row["id"], now)


async def get_template(conn: Connection, program_id: UUID, template_id: str) -> TemplateOut:
    return _template_out(await _template_row(conn, program_id, template_id))


async def list_templates(conn: Connection, program_id: UUID) -> list[TemplateOut]:
    return [_template_out(r) for r in await repository.templates(conn, program_id)]


async def template_versions(conn: Connection, program_id: UUID, template_id: str) -> TemplateVersionList:
    row = await _template_row(conn, program_id, template_id)
    return TemplateVersionList(
        items=[
            TemplateVersionOut(
                version=v["version"],
                subject=v["subject"],
                text=v["text_body"],
                html=v["html_body"],
                created_at=v["created_at"],
            )
            for v in await repository.template_versions(conn, row["id"])
        ]
    )


_COMPILED: OrderedDict[tuple[UUID, int], CompiledTemplate] = OrderedDict()


def compiled_override(row: dict[str, Any]) -> CompiledTemplate:
    """A saved template compiled once per version (it was checked when saved)."""
    key = (row["id"], row["version"])
    found = _COMPILED.get(key)
    if found is None:
        found = rendering.compile_template(
            row["message_type"],
            {"subject": row["subject"], "text": row["text_body"], "html": row["html_body"]},
        )
        _COMPILED[key] = found
        if len(_COMPILED) > 512:
            _COMPILED.popitem(last=False)
    return found


def _zone(name: str | None, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


async def preview_saved(
    conn: Connection, program_id: UUID, template_id: str, data: PreviewIn, now: datetime
) -> PreviewOut:
    """A saved template for a real or a sample customer. Writes nothing."""
    row = await _template_row(conn, program_id, template_id)
    label = f"{row['id']} v{row['version']}"
    source = _Source(saved=row)
    return await _preview(conn, program_id, row["message_type"], row["locale"], source, label, data, now)


async def preview_draft(
    conn: Connection, program_id: UUID, data: DraftPreviewIn, now: datetime
) -> PreviewOut:
    """A draft (checked as a save would be), else the program's current template or the default."""
    message_type, locale = data.message_type, data.locale
    if data.parts is not None:
        source, label = _Source(draft=_sources(data.parts)), "draft"
    else:
        saved = (await repository.overrides(conn, [program_id])).get((program_id, message_type, locale))
        if saved:
            source, label = _Source(saved=saved), f"{saved['id']} v{saved['version']}"
        else:
            source, label = _Source(), f"default:{locale}"
    return await _preview(conn, program_id, message_type, locale, source, label, data, now)


@dataclass(frozen=True, slots=True)
class _Source:
    """What a preview renders: a draft (checked first, as a save would), a saved template, or the default."""

    draft: dict[str, str] | None = None
    saved: dict[str, Any] | None = None


def _render_preview(
    source: _Source, message_type: str, locale: str, format_locale: str, variables: dict[str, Any]
) -> rendering.Rendered:
    """In a render process: compile (or check) and render."""
    if source.draft is not None:
        template = rendering.check(message_type, locale, source.draft)
    elif source.saved is not None:
        template = compiled_override(source.saved)
    else:
        template = rendering.default_template(locale, message_type)
    return rendering.render(
        template,
        message_type=message_type,
        template_locale=locale,
        format_locale=format_locale,
        variables=variables,
    )


async def _preview(
    conn: Connection,
    program_id: UUID,
    message_type: str,
    locale: str,
    source: _Source,
    label: str,
    data: PreviewIn | DraftPreviewIn,
    now: datetime,
) -> PreviewOut:
    """Render for a real customer (their facts, their locale's formats) or a sample one, with the
    program's own name and dates that follow from the clock, as the message would go out now."""
    notes: list[str] = []
    settings = await get_settings(conn, program_id)
    program = await programs.get(conn, program_id)
    program_vars = {"name": program.name, "url": settings.shop_url}
    format_locale = locale
    message = MESSAGE_TYPES[message_type]
    if data.customer is None:
        zone = _zone(None, program.timezone)
        variables = rendering.sample_variables(
            message_type,
            data.count,
            now=now.astimezone(zone),
            program=program_vars,
            pending_days=program.pending_days,
        )
        who = "sample"
    else:
        found = await customers.get(conn, program_id, data.customer, field="customer")
        facts = (await repository.recipients(conn, [found["id"]], now))[found["id"]]
        choice = choose_locale(facts["locale"], settings.default_locale)
        if choice.template_locale == locale:
            format_locale = choice.format_locale
        else:
            notes.append(
                f"the customer's locale is {facts['locale'] or 'not set'}; they would get the {choice.template_locale!r} template"
            )
        zone = _zone(facts["timezone"], facts["program_timezone"])
        sample = rendering.sample_variables(
            message_type, data.count, now=now.astimezone(zone), pending_days=program.pending_days
        )
        own = message_vars(message_type, {}, facts, None, {}, settings, zone, now)
        if "order" in message.variables and own.get("order") is None:
            notes.append("no order given: the sample order is shown")
        variables = {
            **sample,
            **{k: v for k, v in own.items() if v is not None or k not in sample},
            "customer": customer_vars(facts),
            "program": program_vars,
        }
        who = data.customer
    try:
        out = await rendering.isolated(
            _render_preview, source, message_type, locale, format_locale, variables
        )
    except TemplateProblem as problem:  # the draft's own check
        raise _refused(problem) from None
    except RenderLimit as exc:
        if source.draft is not None and data.customer is None:  # the draft's check, stopped
            raise _refused(exc) from None
        raise InvalidInput(
            f"the template does not render for this {'customer' if data.customer else 'sample'}: {exc.detail}",
            field="customer" if data.customer is not None else "count",
            extra={"limit": exc.limit},
        ) from None
    except Exception as exc:  # a saved template met facts its checks did not foresee: say so, 422
        raise InvalidInput(
            f"the template does not render for this customer: {type(exc).__name__}: {exc}", field="customer"
        ) from None
    return PreviewOut(
        message_type=message_type,
        locale=bcp47(format_locale),
        template=label,
        customer=who,
        subject=out.subject,
        text=out.text,
        html=out.html,
        notes=notes,
    )


# --- the message log ---


def message_out(row: dict[str, Any]) -> MessageOut:
    return MessageOut(
        id=row["id"],
        customer=row["customer"],
        message_type=row["message_type"],
        category=row["category"],
        status=row["status"],
        reason=row["reason"],
        journey=row.get("journey"),
        step=row["step"],
        due_at=row["due_at"],
        attempts=row["attempts"],
        to=row["to_email"],
        subject=row["subject"],
        locale=row["locale"],
        locale_note=row["locale_note"],
        template=row["template_ref"],
        message_id=row["message_id"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


async def list_messages(
    conn: Connection,
    program_id: UUID,
    customer: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> MessageList:
    customer_id = None
    if customer is not None:
        customer_id = (await customers.get(conn, program_id, customer, field="query:customer"))["id"]
    rows = await repository.messages(conn, program_id, customer_id, status, decode_cursor(cursor), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return MessageList(
        items=[message_out(r) for r in rows],
        next_cursor=encode_cursor(rows[-1]["id"]) if more and rows else None,
    )


async def recent_for_customer(
    conn: Connection, program_id: UUID, customer_id: UUID, limit: int = 5
) -> list[MessageOut]:
    return [
        message_out(r) for r in await repository.messages(conn, program_id, customer_id, None, None, limit)
    ]


async def link_message(conn: Connection, message_id: int) -> dict[str, Any] | None:
    """The message a signed link (a survey's answer link) was sent in, with its customer's external id;
    None if there is none. The link's signature is the caller's to check first."""
    return await repository.message_of(conn, message_id)


async def get_message(conn: Connection, program_id: UUID, message_id: int) -> MessageOut:
    rows = await repository.messages(conn, program_id, None, None, None, 1, message_id=message_id)
    if not rows:
        raise NotFound(f"no message {message_id}", field="path:message_id")
    return message_out(rows[0])


# --- suppression list ---


def _suppression_out(row: dict[str, Any]) -> SuppressionOut:
    return SuppressionOut(
        email=row["email"], reason=row["reason"], detail=row["detail"], created_at=row["created_at"]
    )


async def add_suppression(
    conn: Connection, program_id: UUID, data: SuppressionIn, now: datetime
) -> SuppressionOut:
    await repository.suppress_addresses(conn, [(program_id, data.email, data.reason, data.detail)], now)
    row = await conn.fetchrow(
        "SELECT email, reason, detail, created_at FROM suppression WHERE program_id = $1 AND email = lower($2)",
        program_id,
        data.email,
    )
    assert row is not None
    return _suppression_out(dict(row))


async def list_suppressions(conn: Connection, program_id: UUID) -> SuppressionList:
    rows = await conn.fetch(
        "SELECT email, reason, detail, created_at FROM suppression WHERE program_id = $1 ORDER BY created_at DESC LIMIT 1000",
        program_id,
    )
    return SuppressionList(items=[_suppression_out(dict(r)) for r in rows])


async def remove_suppression(conn: Connection, program_id: UUID, email: str) -> None:
    result = await conn.execute(
        "DELETE FROM suppression WHERE program_id = $1 AND email = lower($2)", program_id, email
    )
    if result.endswith(" 0"):
        raise NotFound(f"{email!r} is not on the suppression list", field="path:email")


# --- queueing (journeys) ---


async def queue(conn: Connection, messages: list[dict[str, Any]], now: datetime) -> list[str]:
    """Queue messages due now, once per dedupe key (see the repository); the dedupe keys queued."""
    return await repository.queue(conn, messages, now)


# --- unsubscribe ---


async def unsubscribe(conn: Connection, key: bytes, token: str, now: datetime) -> tuple[str, str]:
    """Apply a signed link: marketing messages stop (scope marketing) or every message does (scope all).
    Idempotent; returns the program's name and the scope."""
    link = delivery.read_unsubscribe_token(key, token)
    row = await conn.fetchrow(
        """
        SELECT c.id, c.program_id, c.external_id, c.marketing_consent, c.transactional_consent, p.name
        FROM message m JOIN customer c ON c.id = m.customer_id JOIN program p ON p.id = c.program_id
        WHERE m.id = $1 AND m.customer_id = $2 FOR UPDATE OF c
        """,
        link.message_id,
        link.customer_id,
    )
    if row is None:
        raise NotFound("this unsubscribe link's message is gone", field="path:token")
    changed = row["marketing_consent"] or (link.scope == "all" and row["transactional_consent"])
    if changed:
        await customers.withdraw_consent(conn, row["id"], link.scope, now)
        await emit(
            conn,
            row["program_id"],
            [
                Event(
                    "customer.unsubscribed",
                    {"customer": row["external_id"], "scope": link.scope, "message": link.message_id},
                )
            ],
            now,
        )
    return row["name"], link.scope


# --- preparing a batch for sending ---


@dataclass(slots=True)
class Prepared:
    row: dict[str, Any]
    outcome: dict[str, Any]
    envelope: delivery.Envelope | None = None


@dataclass(slots=True)
class BatchFacts:
    settings: dict[UUID, MessagingSettings]
    recipients: dict[UUID, dict[str, Any]]
    orders: dict[UUID, dict[str, Any]]
    tiers: dict[UUID, dict[str, dict[str, Any]]]
    recent: dict[UUID, list[datetime]]
    overrides: dict[tuple[UUID, str, str], dict[str, Any]]
    redemptions: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    recent_staff: dict[UUID, list[datetime]] = field(default_factory=dict)  # per program (its staff cap)


def _redemption_shown(row: dict[str, Any]) -> UUID | None:
    """The code (redemption) a message sends, if its type shows one and its trigger or step had one."""
    if "code" not in MESSAGE_TYPES[row["message_type"]].variables:
        return None
    source = code_source(row["context"])
    return UUID(str(source["redemption_id"])) if source and source.get("redemption_id") else None


def _order_shown(row: dict[str, Any]) -> UUID | None:
    """The order a message shows, if its type shows one and its trigger had one."""
    order_id = row["context"].get("order_id")
    return UUID(order_id) if order_id and "order" in MESSAGE_TYPES[row["message_type"]].variables else None


async def batch_facts(conn: Connection, rows: Sequence[dict[str, Any]], now: datetime) -> BatchFacts:
    """Everything a batch's messages need, in one query per kind of fact."""
    program_ids = list({r["program_id"] for r in rows})
    customer_ids = list({r["customer_id"] for r in rows})
    order_ids = list({order_id for r in rows if (order_id := _order_shown(r)) is not None})
    redemption_ids = list({code for r in rows if (code := _redemption_shown(r)) is not None})
    settings = await repository.settings_of(conn, program_ids)
    longest_cap = max((s.marketing_cap_days for s in settings.values()), default=7)
    needs_tiers = any(r["message_type"].startswith("tier_") for r in rows)
    return BatchFacts(
        settings=settings,
        recipients=await repository.recipients(conn, customer_ids, now),
        orders=await repository.orders(conn, order_ids),
        tiers=await repository.tier_definitions(conn, program_ids) if needs_tiers else {},
        recent=await repository.recent_marketing(conn, customer_ids, now - timedelta(days=longest_cap)),
        overrides=await repository.overrides(conn, program_ids),
        redemptions=await rewards.codes_shown(conn, redemption_ids),
        recent_staff=await repository.recent_staff(
            conn,
            list({r["program_id"] for r in rows if r["category"] == "staff"}),
            now - domain.STAFF_CAP_WINDOW,
        ),
    )


def prepare(
    rows: Sequence[dict[str, Any]], facts: BatchFacts, now: datetime, key: bytes, public_url: str
) -> list[Prepared]:
    """Decide (guardrails) and render each message, oldest first; the batch's own marketing sends count
    towards the caps of the messages after them."""
    prepared: list[Prepared] = []
    rails = {program_id: guardrails(settings) for program_id, settings in facts.settings.items()}
    # Thread CPU each program with templates of its own took in this batch.
    timed = {program_id for program_id, _, _ in facts.overrides}
    render_seconds: dict[UUID, float] = {}
    for row in sorted(rows, key=lambda r: r["due_at"]):
        if render_seconds.get(row["program_id"], 0.0) >= PROGRAM_RENDER_SECONDS_PER_BATCH:
            prepared.append(Prepared(row, _render_time_spent(row, now)))
            continue
        customer = facts.recipients.get(row["customer_id"])
        if customer is None:
            prepared.append(
                Prepared(row, {"id": row["id"], "status": "suppressed", "reason": "the customer is gone"})
            )
            continue
        settings = facts.settings[row["program_id"]]
        staff = row["category"] == "staff"
        zone = _zone(None if staff else customer["timezone"], customer["program_timezone"])
        recent = facts.recent.setdefault(row["customer_id"], [])
        if staff:  # to the program's people, about this customer: only the staff cap applies
            staff_sent = facts.recent_staff.setdefault(row["program_id"], [])
            decision = domain.decide_staff(
                row["context"].get("to"), staff_sent, settings.staff_cap_per_hour, now
            )
        else:
            recipient = domain.Recipient(
                email=customer["email"],
                transactional_consent=customer["transactional_consent"],
                marketing_consent=customer["marketing_consent"],
                suppressed=customer["suppressed"],
                timezone=zone,
            )
            decision = domain.decide(
                row["category"], recipient, rails[row["program_id"]], recent, now,
                respect_quiet_hours=MESSAGE_TYPES[row["message_type"]].quiet_hours,
            )  # fmt: skip
        if decision.outcome == "suppress":
            prepared.append(
                Prepared(row, {"id": row["id"], "status": "suppressed", "reason": decision.reason})
            )
            continue
        if decision.outcome == "defer":
            prepared.append(
                Prepared(
                    row,
                    {
                        "id": row["id"],
                        "status": "deferred",
                        "reason": decision.reason,
                        "due_at": decision.until,
                    },
                )
            )
            continue
        timing = row["program_id"] in timed  # our defaults alone need no watch
        started = thread_time() if timing else 0.0
        prepared.append(_render(row, customer, settings, facts, zone, now, key, public_url))
        if timing:
            spent = render_seconds.get(row["program_id"], 0.0)
            render_seconds[row["program_id"]] = spent + thread_time() - started
        if row["category"] == "marketing":
            recent.append(now)
        if staff:
            staff_sent.append(now)
    return prepared


# A batch with programs' own templates renders in a render process: each program's messages within its
# render time (PROGRAM_RENDER_SECONDS_PER_BATCH) plus a margin; past that the process is stopped and
# the messages go one at a time, so that what stopped it fails alone.
BATCH_RENDER_MARGIN_SECONDS = 10.0
MESSAGE_RENDER_SECONDS = 5.0


def prepare_isolated(
    rows: Sequence[dict[str, Any]], facts: BatchFacts, now: datetime, key: bytes, public_url: str
) -> list[Prepared]:
    """`prepare`, in a render process when a program's own template may be used (our defaults render
    here). A message that stops its render process fails ("could not render: ..."); after one, the rest
    of that program's messages in the batch wait a minute, as when its render time is spent."""
    programs = {r["program_id"] for r in rows}
    own = {program for program, _, _ in facts.overrides if program in programs}
    if not own:
        return prepare(rows, facts, now, key, public_url)
    timeout = BATCH_RENDER_MARGIN_SECONDS + PROGRAM_RENDER_SECONDS_PER_BATCH * len(own)
    try:
        return RENDERERS.run(prepare, rows, facts, now, key, public_url, timeout=timeout)
    except RenderLimit:
        pass
    prepared: list[Prepared] = []
    stopped: set[UUID] = set()
    for row in sorted(rows, key=lambda r: r["due_at"]):
        if row["program_id"] in stopped:
            prepared.append(Prepared(row, _render_time_spent(row, now)))
            continue
        try:
            if row["program_id"] in own:
                [one] = RENDERERS.run(
                    prepare,
                    [row],
                    _facts_of(facts, row),
                    now,
                    key,
                    public_url,
                    timeout=MESSAGE_RENDER_SECONDS,
                )
            else:  # our defaults: here
                [one] = prepare([row], _facts_of(facts, row), now, key, public_url)
        except RenderLimit as exc:
            stopped.add(row["program_id"])
            one = Prepared(
                row,
                {
                    "id": row["id"],
                    "status": "failed",
                    "reason": f"could not render: {exc}",
                    "last_error": f"RenderLimit: {exc}",
                },
            )
        prepared.append(one)
        if one.envelope is not None and row["category"] == "marketing":  # counts towards the caps after it
            facts.recent.setdefault(row["customer_id"], []).append(now)
    return prepared


def _facts_of(facts: BatchFacts, row: dict[str, Any]) -> BatchFacts:
    """What one message needs of its batch's facts (a process is handed only that)."""
    program, customer, order = row["program_id"], row["customer_id"], _order_shown(row)
    code = _redemption_shown(row)
    return BatchFacts(
        settings={program: facts.settings[program]},
        recipients={customer: facts.recipients[customer]} if customer in facts.recipients else {},
        orders={order: facts.orders[order]} if order in facts.orders else {},
        tiers={program: facts.tiers[program]} if program in facts.tiers else {},
        recent={customer: list(facts.recent.get(customer, []))},
        overrides={k: v for k, v in facts.overrides.items() if k[0] == program},
        redemptions={code: facts.redemptions[code]} if code in facts.redemptions else {},
        recent_staff={program: list(facts.recent_staff.get(program, []))},
    )


def _render_time_spent(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": "deferred",
        "reason": "the program's templates used their render time in this batch",
        "due_at": now + RENDER_TIME_DEFERRAL,
    }


def _render(
    row: dict[str, Any],
    customer: dict[str, Any],
    settings: MessagingSettings,
    facts: BatchFacts,
    zone: ZoneInfo,
    now: datetime,
    key: bytes,
    public_url: str,
) -> Prepared:
    message_type = row["message_type"]
    staff = row["category"] == "staff"
    # Staff read the program's language; a customer theirs.
    choice = choose_locale(None if staff else customer["locale"], settings.default_locale)
    saved = facts.overrides.get((row["program_id"], message_type, choice.template_locale))
    scope: delivery.Scope = "marketing" if row["category"] == "marketing" else "all"
    url = (
        ""
        if staff  # staff change the alert address; they do not unsubscribe a customer
        else f"{public_url}/v1/unsubscribe/{delivery.unsubscribe_token(key, row['id'], row['customer_id'], scope)}"
    )
    context = row["context"]
    survey = context.get("survey") if message_type == "survey" else None
    answer_url = (
        f"{public_url}/v1/answer/{delivery.answer_token(key, row['id'], row['customer_id'], UUID(survey['id']))}"
        if survey
        else None
    )
    order_id = _order_shown(row)
    order = facts.orders.get(order_id) if order_id is not None else None
    redemption_id = _redemption_shown(row)
    redemption = facts.redemptions.get(redemption_id) if redemption_id is not None else None
    kind = MESSAGE_TYPES[message_type]
    if kind.open_code and redemption is not None and redemption["status"] != "issued":
        reason = f"the code is {redemption['status']}"  # used, cancelled or expired since the trigger
        return Prepared(row, {"id": row["id"], "status": "suppressed", "reason": reason})
    try:
        if order is None and kind.needs_order:
            raise LookupError("the message's order is gone")
        if kind.needs_code and redemption_id is None:
            raise LookupError("the message has no code to send")
        if message_type == "survey" and answer_url is None:
            raise LookupError("the message has no survey to ask")
        template = (
            compiled_override(saved)
            if saved
            else rendering.default_template(choice.template_locale, message_type)
        )
        variables = message_vars(
            message_type,
            context,
            customer,
            order,
            facts.tiers.get(row["program_id"], {}),
            settings,
            zone,
            now,
            locale=choice.template_locale,
            redemption=redemption,
            answer_url=answer_url,
        )
        variables["customer"] = customer_vars(customer)
        variables["program"] = {"name": customer["program_name"], "url": settings.shop_url}
        variables["unsubscribe_url"] = url
        if message_type == "feedback_alarm":  # the case, where an agent takes it on
            case_id = context.get("case_id")
            variables["case_url"] = f"{public_url}/v1/cases/{case_id}" if case_id else None
        out = rendering.render(
            template,
            message_type=message_type,
            template_locale=choice.template_locale,
            format_locale=choice.format_locale,
            variables=variables,
        )
    except Exception as exc:  # recorded on the message: one bad message never stops the batch
        limit = isinstance(exc, RenderLimit)
        return Prepared(
            row,
            {
                "id": row["id"],
                "status": "failed",
                "reason": f"could not render: {exc}" if limit else "could not render",
                "last_error": f"{type(exc).__name__}: {exc}",
            },
        )
    envelope = delivery.Envelope(
        message_db_id=row["id"],
        from_email=settings.from_email,
        from_name=settings.from_name or customer["program_name"],
        reply_to=settings.reply_to,
        to_email=context["to"] if staff else customer["email"],
        to_name=None if staff else customer["name"],
        subject=out.subject,
        text=out.text,
        html=out.html,
        locale=choice.format_locale,
        unsubscribe_url=url or None,
        date=now,
    )
    outcome = {
        "id": row["id"],
        "locale": bcp47(choice.format_locale),
        "locale_note": choice.note,
        "template_ref": f"{saved['id']} v{saved['version']}"
        if saved
        else f"default:{choice.template_locale}",
        "to_email": envelope.to_email,
        "subject": out.subject,
        "message_id": delivery.message_id_header(row["id"], settings.from_email),
    }
    return Prepared(row, outcome, envelope)


def after_send(prepared: Prepared, result: delivery.SendResult, now: datetime) -> dict[str, Any]:
    """The message's record after a try: sent, again later (with backoff), or failed for good."""
    outcome = dict(prepared.outcome)
    attempts = prepared.row["attempts"] + 1
    outcome["attempts"] = attempts
    if result.ok:
        outcome.update(status="sent", reason=None, sent_at=now, last_error=None)
    elif result.permanent or attempts >= domain.MAX_ATTEMPTS:
        why = "refused by the mail server" if result.permanent else f"gave up after {attempts} attempts"
        outcome.update(status="failed", reason=why, last_error=result.error)
    else:
        outcome.update(
            status="queued",
            reason="retrying after a temporary failure",
            due_at=now + domain.retry_delay(attempts),
            last_error=result.error,
        )
    return outcome
