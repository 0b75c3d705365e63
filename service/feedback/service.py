"""Voice of the customer: surveys (NPS, CSAT), the answers customers give, and what a score sets off — a
detractor opens a recovery case and fires the gift rules' `detractor` trigger, a score under the survey's
threshold raises an alarm, a follow-up still unhappy reopens its case.

Use cases take the caller's transaction and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

import msgspec

from service.core.db import Connection
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.pagination import decode_position, encode_position
from service.core.work import Work
from service.customers import service as customers
from service.earning import pipeline
from service.feedback import defaults, domain, repository
from service.feedback.schemas import (
    MAX_COMMENT_CHARS,
    DimensionOut,
    FeedbackIn,
    FeedbackList,
    FeedbackOut,
    SurveyIn,
    SurveyList,
    SurveyOut,
    SurveyPatch,
)
from service.ledger import service as ledger
from service.messaging import delivery
from service.messaging import service as messaging
from service.messaging.catalogue import LOCALES
from service.orders import service as orders
from service.outbox.service import Event, emit
from service.programs import service as programs
from service.programs.service import Program
from service.recovery import service as recovery
from service.status import service as status

surveys_due = repository.surveys_due  # published: outreach's `survey_due` trigger selects with it


class SurveyExists(Conflict):
    slug = "survey-exists"
    title = "The program has a survey of this key"


# --- surveys ------------------------------------------------------------------------------------------------


def _survey_out(row: dict[str, Any]) -> SurveyOut:
    scale = domain.SCALES[row["kind"]]
    shipped = defaults.QUESTIONS[row["kind"]]
    return SurveyOut(
        id=row["id"],
        key=row["key"],
        name=row["name"],
        kind=row["kind"],
        scale=[scale.low, scale.high],
        questions={locale: row["questions"].get(locale) or shipped[locale] for locale in LOCALES},
        dimensions=[
            DimensionOut(
                key=d["key"],
                labels={
                    locale: d["labels"].get(locale)
                    or defaults.DIMENSION_LABELS.get(d["key"], {}).get(locale)
                    or d["labels"].get("en")
                    or d["key"]
                    for locale in LOCALES
                },
            )
            for d in row["dimensions"]
        ],
        send_after=row["send_after"],
        delay_days=row["delay_days"],
        alarm_below=row["alarm_below"],
        ask_promoters=row["ask_promoters"],
        follow_up=row["follow_up"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _checked(values: dict[str, Any]) -> dict[str, Any]:
    """What the schema cannot check: dimensions are CSAT's and each once; the threshold on the scale."""
    kind: domain.Kind = values["kind"]
    dimensions = values["dimensions"]
    if dimensions and kind != "csat":
        raise InvalidInput("dimensions are rated on a CSAT survey (1-5), not on NPS", field="dimensions")
    keys = [d["key"] for d in dimensions]
    for index, key in enumerate(keys):
        if keys.index(key) != index:
            raise InvalidInput(f"dimension {key!r} twice", field=f"dimensions[{index}].key")
    if values["alarm_below"] is None:
        values["alarm_below"] = domain.SCALES[kind].default_alarm_below
    if not domain.threshold_holds(kind, values["alarm_below"]):
        scale = domain.SCALES[kind]
        raise InvalidInput(
            f"a {kind.upper()} score is {scale.low} to {scale.high}: an alarm threshold is {scale.low} to "
            f"{scale.high + 1}",
            field="alarm_below",
        )
    return values


async def create_survey(conn: Connection, program: Program, data: SurveyIn, now: datetime) -> SurveyOut:
    values = _checked({"id": uuid4(), **msgspec.to_builtins(data), "created_at": now})
    if not await repository.insert_survey(conn, program.id, values):
        raise SurveyExists(f"the program has a survey {data.key!r}", field="key")
    return await get_survey(conn, program, data.key)


async def update_survey(
    conn: Connection, program: Program, key: str, patch: SurveyPatch, now: datetime
) -> SurveyOut:
    row = await repository.get_survey(conn, program.id, key, lock=True)
    if row is None:
        raise NotFound(f"no survey {key!r} in this program", field="path:key")
    changes = {k: v for k, v in msgspec.to_builtins(patch).items()}
    await repository.update_survey(conn, program.id, _checked({**row, **changes}), now)
    return await get_survey(conn, program, key)


async def get_survey(conn: Connection, program: Program, key: str) -> SurveyOut:
    row = await repository.get_survey(conn, program.id, key)
    if row is None:
        raise NotFound(f"no survey {key!r} in this program", field="path:key")
    return _survey_out(row)


async def find_survey(conn: Connection, program_id: UUID, key: str) -> dict[str, Any] | None:
    """A survey's row (id, key, kind, ...) by its key, or None: for the reports."""
    return await repository.get_survey(conn, program_id, key)


async def list_surveys(conn: Connection, program: Program, status: str | None) -> SurveyList:
    return SurveyList(items=[_survey_out(r) for r in await repository.list_surveys(conn, program.id, status)])


# --- answers ------------------------------------------------------------------------------------------------


def _feedback_out(row: dict[str, Any]) -> FeedbackOut:
    return FeedbackOut(
        id=row["id"],
        customer_external_id=row["customer_external_id"],
        survey=row["survey_key"],
        kind=row["kind"],
        score=row["score"],
        category=row["category"],
        dimensions=row["dimensions"],
        comment=row["comment"],
        order_external_id=row["order_external_id"],
        channel=row["channel"],
        alarm=row["alarm"],
        case_id=row["case_id"],
        follows_up_case_id=row["follows_up_case_id"],
        reopened=row["reopened"],
        answered_at=row["answered_at"],
        changeable_until=row["changeable_until"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _survey_of(
    conn: Connection, program: Program, data: FeedbackIn
) -> tuple[dict[str, Any] | None, str]:
    """The survey answered (or None) and the answer's kind."""
    if data.survey is None:
        if data.kind is None:
            raise InvalidInput(
                "name the `survey` answered, or the `kind` (nps, csat) of a score", field="kind"
            )
        return None, data.kind
    survey = await repository.get_survey(conn, program.id, data.survey)
    if survey is None:
        raise NotFound(f"no survey {data.survey!r} in this program", field="survey")
    if survey["status"] == "archived":
        raise InvalidInput(f"survey {data.survey!r} is archived", field="survey")
    if data.kind is not None and data.kind != survey["kind"]:
        raise InvalidInput(
            f"survey {data.survey!r} is {survey['kind'].upper()}, not {data.kind}", field="kind"
        )
    return survey, survey["kind"]


def _check_scores(kind: str, survey: dict[str, Any] | None, data: FeedbackIn) -> None:
    scale = domain.SCALES[kind]  # type: ignore[index]
    if not scale.holds(data.score):
        raise InvalidInput(f"a {kind.upper()} score is {scale.low} to {scale.high}", field="score")
    if data.dimensions and kind != "csat":
        raise InvalidInput("dimensions are rated on a CSAT survey, not on NPS", field="dimensions")
    if survey is not None:
        declared = {d["key"] for d in survey["dimensions"]}
        for key in data.dimensions:
            if key not in declared:
                names = ", ".join(sorted(declared)) or "none"
                raise InvalidInput(
                    f"survey {survey['key']!r} rates no {key!r} (its dimensions: {names})",
                    field=f"dimensions.{key}",
                )


def _case_summary(kind: str, score: int, comment: str | None) -> str:
    said = f"{kind.upper()} {score}"
    return f"{said}: {comment.strip()}"[:500] if comment else f"{said}, no comment"


async def record(work: Work[Program], data: FeedbackIn) -> FeedbackOut:
    """A shop's own answer (POST /v1/feedback): recorded once (the request's idempotency key), then what it
    sets off: a detractor's opens a case and fires the `detractor` gift trigger; a follow-up still unhappy
    reopens its case instead; a score under the threshold raises `feedback.alarm`."""
    conn, program, now = work.conn, work.program, work.now
    row = await customers.get(conn, program.id, data.customer, field="customer")
    survey, kind = await _survey_of(conn, program, data)
    _check_scores(kind, survey, data)
    order_id = (
        None
        if data.order is None
        else await orders.customers_order(conn, program.id, row["external_id"], data.order, "order")
    )
    follow_up = None
    if data.follows_up_case_id is not None:
        follow_up = await recovery.case_row(conn, program, data.follows_up_case_id, "follows_up_case_id")
        if follow_up["customer_id"] != row["id"]:
            raise InvalidInput("the case is another customer's", field="follows_up_case_id")
    feedback_id = uuid4()
    await _insert(
        work,
        row,
        survey,
        kind,
        feedback_id=feedback_id,
        score=data.score,
        dimensions=data.dimensions,
        comment=data.comment,
        order_id=order_id,
        channel=data.channel,
        source_key=f"api:{feedback_id}",
        follows_up_case_id=data.follows_up_case_id,
        answered_at=data.answered_at or now,
        changeable_until=None,
    )
    await _set_off(work, feedback_id, row, follow_up, order_id, before=None)
    found = await repository.get_feedback(conn, program.id, feedback_id)
    assert found is not None
    return _feedback_out(found)


async def _insert(
    work: Work[Program],
    customer_row: dict[str, Any],
    survey: dict[str, Any] | None,
    kind: str,
    *,
    feedback_id: UUID,
    score: int,
    dimensions: dict[str, int],
    comment: str | None,
    order_id: UUID | None,
    channel: str,
    source_key: str,
    follows_up_case_id: UUID | None,
    answered_at: datetime,
    changeable_until: datetime | None,
) -> bool:
    """An answer's row, once per `source_key`; False when its source answered before."""
    alarm_below = survey["alarm_below"] if survey else domain.SCALES[kind].default_alarm_below  # type: ignore[index]
    return await repository.insert_feedback(
        work.conn,
        {
            "id": feedback_id,
            "program_id": work.program.id,
            "customer_id": customer_row["id"],
            "survey_id": survey["id"] if survey else None,
            "kind": kind,
            "score": score,
            "category": domain.category(kind, score),  # type: ignore[arg-type]
            "dimensions": dimensions,
            "comment": comment,
            "order_id": order_id,
            "channel": channel,
            "source_key": source_key,
            "alarm": domain.is_alarm(score, alarm_below),
            "follows_up_case_id": follows_up_case_id,
            "answered_at": answered_at,
            "changeable_until": changeable_until,
            "created_at": work.now,
        },
    )


async def _set_off(
    work: Work[Program],
    feedback_id: UUID,
    customer_row: dict[str, Any],
    follow_up: dict[str, Any] | None,
    order_id: UUID | None,
    before: dict[str, Any] | None,
) -> None:
    """What an answer sets off, in the caller's transaction, and its events; `before`: the answer as it was
    when this is a change of it (a survey link's, within its week), so only what the change newly is sets
    anything off — a case opened once, an alarm raised once."""
    conn, program, now = work.conn, work.program, work.now
    found = await repository.get_feedback(conn, program.id, feedback_id)
    assert found is not None
    events: list[Event] = []
    case_id = found["case_id"]
    newly_detractor = found["category"] == "detractor" and (
        before is None or before["category"] != "detractor"
    )
    if newly_detractor and follow_up is not None:  # "did we put it right?" — no: the case again
        words = f"Follow-up: {_case_summary(found['kind'], found['score'], found['comment'])}"
        _, reopened = await recovery.reopen(conn, program, follow_up["id"], words, now, "follows_up_case_id")
        events.extend(reopened)
    elif newly_detractor and case_id is None:
        case_id, opened = await recovery.open_case(
            conn,
            program,
            ledger.customer_of(customer_row),
            source="feedback",
            source_key=f"feedback:{feedback_id}",
            summary=_case_summary(found["kind"], found["score"], found["comment"]),
            opened_at=found["answered_at"],
            order_id=order_id,
            now=now,
        )
        events.extend(opened)
        if case_id is not None:
            await repository.set_case(conn, program.id, feedback_id, case_id)
        await pipeline.record_detractor(work, customer_row["external_id"], f"feedback:{feedback_id}")
    payload = _payload(found, case_id, changed=before is not None)
    events.append(Event("feedback.received", payload))
    if found["alarm"] and (before is None or not before["alarm"]):
        events.append(Event("feedback.alarm", payload))
        await _alarm_mail(work, found, customer_row, case_id or (follow_up["id"] if follow_up else None))
    await emit(conn, program.id, events, now)


async def _alarm_mail(
    work: Work[Program], found: dict[str, Any], customer_row: dict[str, Any], case_id: UUID | None
) -> None:
    """The alarm to the program's alert address (none set: only the event): a staff message with the
    answer, the customer's status and the case; once per answer."""
    conn, program, now = work.conn, work.program, work.now
    if not program.alert_email:
        return
    standing = await status.customer_status(conn, program, customer_row["external_id"], now)
    # Staff read the program's language (the messaging settings' default locale).
    locale = (await messaging.get_settings(conn, program.id)).default_locale
    labels = await _dimension_labels(conn, program, found, locale)
    context = {
        "to": program.alert_email,
        "case_id": None if case_id is None else str(case_id),
        "feedback": {
            "id": str(found["id"]),
            "score": found["score"],
            "kind": found["kind"],
            "category": found["category"],
            "survey": found["survey_name"],
            "comment": found["comment"],
            "dimensions": [{"label": labels.get(k, k), "score": v} for k, v in found["dimensions"].items()],
            "order_number": found["order_external_id"],
            "answered_at": found["answered_at"].isoformat(),
        },
        "status": {
            "tier": standing.tier.tier.name if standing.tier and standing.tier.tier else None,
            "points": standing.points.available,
            "pending_points": standing.points.pending,
            "orders_count": standing.orders.count,
            "open_cases": len(standing.open_cases),
        },
    }
    await messaging.queue(
        conn,
        [
            {
                "program_id": str(program.id),
                "customer_id": str(customer_row["id"]),
                "message_type": "feedback_alarm",
                "category": "staff",
                "journey_id": None,
                "step": None,
                "trigger_key": None,
                "dedupe_key": f"alarm:{found['id']}",
                "context": context,
            }
        ],
        now,
    )


async def _dimension_labels(
    conn: Connection, program: Program, found: dict[str, Any], locale: str
) -> dict[str, str]:
    if not found["dimensions"] or found["survey_id"] is None:
        return {}
    survey = await repository.get_survey(conn, program.id, survey_id=found["survey_id"])
    if survey is None:
        return {}
    return {d.key: d.labels.get(locale) or d.key for d in _survey_out(survey).dimensions}


def _payload(found: dict[str, Any], case_id: UUID | None, *, changed: bool = False) -> dict[str, Any]:
    promoter_ask = found["survey_ask_promoters"] if found["category"] == "promoter" else None
    return {
        "feedback_id": str(found["id"]),
        "customer": found["customer_external_id"],
        "survey": found["survey_key"],
        "kind": found["kind"],
        "score": found["score"],
        "category": found["category"],
        "dimensions": found["dimensions"],
        "comment": found["comment"],
        "order": found["order_external_id"],
        "channel": found["channel"],
        "alarm": found["alarm"],
        "case_id": None if case_id is None else str(case_id),
        "follows_up_case_id": None
        if found["follows_up_case_id"] is None
        else str(found["follows_up_case_id"]),
        "answered_at": found["answered_at"],
        "changed": changed,  # a survey link's answer changed within its week
        # The promoter journey asks for this (review, referral); None: nothing to ask.
        "promoter_ask": None if promoter_ask in (None, "none") else promoter_ask,
    }


async def get_feedback(conn: Connection, program: Program, feedback_id: UUID) -> FeedbackOut:
    row = await repository.get_feedback(conn, program.id, feedback_id)
    if row is None:
        raise NotFound(f"no feedback {feedback_id} in this program", field="path:feedback_id")
    return _feedback_out(row)


async def list_feedback(
    conn: Connection,
    program: Program,
    *,
    customer: str | None,
    survey: str | None,
    category: str | None,
    alarm: bool | None,
    cursor: str | None,
    limit: int,
) -> FeedbackList:
    rows = await repository.list_feedback(
        conn,
        program.id,
        customer=customer,
        survey=survey,
        category=category,
        alarm=alarm,
        after=decode_position(cursor),
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return FeedbackList(
        items=[_feedback_out(r) for r in rows],
        next_cursor=encode_position(rows[-1]["answered_at"], rows[-1]["id"]) if more else None,
    )


# --- answers by survey link (the page at /v1/answer/{token}) -------------------------------------------------


LinkProblem = Literal["invalid", "expired", "closed"]


class LinkRefused(Exception):
    """A survey link that takes no answer now: not ours (`invalid`), past its 30 days unanswered
    (`expired`), or answered and past its week (`closed`: `answer` is what was given)."""

    def __init__(self, problem: LinkProblem, locale: str = "en", answer: dict[str, Any] | None = None):
        super().__init__(problem)
        self.problem = problem
        self.locale = locale
        self.answer = answer


@dataclass(slots=True)
class Link:
    message: dict[str, Any]  # the survey message the link was sent in (its context: what it asked)
    program: Program
    survey: SurveyOut  # the survey as it is now (its dimensions, their labels)
    survey_row: dict[str, Any]  # the same, as stored (what an answer is recorded against)
    kind: domain.Kind
    locale: str  # the message's: the page speaks it
    question: str
    answer: dict[str, Any] | None  # the answer given by this link, while it can still be changed


@dataclass(frozen=True, slots=True)
class LinkAnswer:
    """What the page's form posts, as text (the page reads it; nothing here is trusted)."""

    score: str | None
    comment: str | None
    dimensions: dict[str, str]


def scale_of(kind: domain.Kind) -> domain.Scale:
    return domain.SCALES[kind]


def _page_locale(message: dict[str, Any]) -> str:
    language = (message.get("locale") or "en").replace("_", "-").split("-")[0].lower()
    return language if language in LOCALES else "en"


async def open_link(conn: Connection, key: bytes, token: str, now: datetime) -> Link:
    """The survey link's message, survey and answer so far; LinkRefused when it takes no answer now."""
    try:
        signed = delivery.read_answer_token(key, token)
    except ValueError:
        raise LinkRefused("invalid") from None
    message = await messaging.link_message(conn, signed.message_id)
    asked = (message or {}).get("context", {}).get("survey") or {}
    if (
        message is None
        or message["message_type"] != "survey"
        or message["customer_id"] != signed.customer_id
        or asked.get("id") != str(signed.survey_id)
    ):
        raise LinkRefused("invalid")
    locale = _page_locale(message)
    program = await programs.load(conn, message["program_id"])
    survey_row = await repository.get_survey(conn, program.id, survey_id=signed.survey_id)
    if survey_row is None:
        raise LinkRefused("invalid", locale)
    answer = await repository.feedback_by_source(conn, program.id, f"link:{message['id']}")
    state = domain.link_state(
        message["sent_at"] or message["created_at"],
        answer["changeable_until"] if answer else None,
        answer is not None,
        now,
    )
    if state in ("closed", "expired"):
        raise LinkRefused(state, locale, answer)  # type: ignore[arg-type]
    if survey_row["status"] == "archived" and answer is None:
        raise LinkRefused("expired", locale)
    questions: dict[str, str] = asked.get("questions") or {}
    question = (questions.get(locale) or questions.get("en") or "").replace("{shop}", program.name)
    return Link(
        message, program, _survey_out(survey_row), survey_row, survey_row["kind"], locale, question, answer
    )


def _form_int(value: str | None, field: str, low: int, high: int, what: str) -> int:
    try:
        number = int((value or "").strip())
    except ValueError:
        raise InvalidInput(f"choose a {what} from {low} to {high}", field=field) from None
    if not low <= number <= high:
        raise InvalidInput(f"choose a {what} from {low} to {high}", field=field)
    return number


def _form_values(link: Link, form: LinkAnswer) -> tuple[int, dict[str, int], str | None]:
    """The form's score, dimension ratings and comment, checked as the API checks them."""
    scale = domain.SCALES[link.kind]
    score = _form_int(form.score, "score", scale.low, scale.high, "score")
    declared = {d.key for d in link.survey.dimensions}
    dimensions: dict[str, int] = {}
    for key, value in form.dimensions.items():
        if key not in declared:
            raise InvalidInput(f"the survey rates no {key!r}", field=f"dimensions.{key}")
        if value.strip():  # a dimension left unrated is not rated
            dimensions[key] = _form_int(value, f"dimensions.{key}", 1, 5, "rating")
    comment = form.comment.strip() if form.comment else ""
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput(
            f"the comment is {len(comment)} characters: at most {MAX_COMMENT_CHARS}", field="comment"
        )
    if "\x00" in comment:  # PostgreSQL text holds no NUL
        raise InvalidInput("the comment must not contain NUL characters", field="comment")
    return score, dimensions, comment or None


async def answer_link(
    conn: Connection, key: bytes, token: str, form: LinkAnswer, now: datetime
) -> tuple[Link, Work[Program]]:
    """The page's POST: the first answer by this link, or a change of it within its week, and what it sets
    off. Two posts at once: the first inserts, the second changes it (the answer's row is locked). The
    caller commits, then runs what the work registered for after it (`work.committed`)."""
    link = await open_link(conn, key, token, now)
    score, dimensions, comment = _form_values(link, form)
    program, message = link.program, link.message
    work = Work(conn=conn, program_id=program.id, program=program, now=now, actor="customer (survey link)")
    row = await customers.get(conn, program.id, message["external_id"], field="customer")
    context = message["context"]
    order_id = UUID(context["order_id"]) if context.get("order_id") else None
    case_id = UUID(context["follow_up_case_id"]) if context.get("follow_up_case_id") else None
    follow_up = None if case_id is None else await recovery.case_row(conn, program, case_id, "follow_up")
    survey_row = link.survey_row
    source_key = f"link:{message['id']}"
    feedback_id = uuid4()
    if await _insert(
        work,
        row,
        survey_row,
        link.kind,
        feedback_id=feedback_id,
        score=score,
        dimensions=dimensions,
        comment=comment,
        order_id=order_id,
        channel="email",
        source_key=source_key,
        follows_up_case_id=case_id,
        answered_at=now,
        changeable_until=now + timedelta(days=domain.CHANGEABLE_DAYS),
    ):
        await _set_off(work, feedback_id, row, follow_up, order_id, before=None)
    else:
        before = await repository.feedback_by_source(conn, program.id, source_key, lock=True)
        assert before is not None
        if before["changeable_until"] is None or now >= before["changeable_until"]:
            raise LinkRefused("closed", link.locale, before)
        await repository.change_feedback(
            conn,
            program.id,
            before["id"],
            score=score,
            category=domain.category(link.kind, score),
            dimensions=dimensions,
            comment=comment,
            alarm=domain.is_alarm(score, survey_row["alarm_below"]),
            now=now,
        )
        await _set_off(work, before["id"], row, follow_up, order_id, before=before)
    link.answer = await repository.feedback_by_source(conn, program.id, source_key)
    return link, work
