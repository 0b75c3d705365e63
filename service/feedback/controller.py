from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import parse_qsl
from uuid import UUID
from zoneinfo import ZoneInfo

from litestar import Controller, MediaType, Request, Response, get, patch, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core import db
from service.core.auth import Permission, requires
from service.core.clock import Clock
from service.core.errors import InvalidInput
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.openapi import html_pages, problems
from service.core.work import Run, Work, committed
from service.feedback import page, service
from service.feedback.schemas import (
    MAX_COMMENT_CHARS,
    Category,
    FeedbackIn,
    FeedbackList,
    FeedbackOut,
    SurveyIn,
    SurveyList,
    SurveyOut,
    SurveyPatch,
    SurveyStatus,
)
from service.programs.service import Program
from service.settings import Settings

SETS_OFF = (
    "Promoter 9-10, passive 7-8, detractor 0-6 (CSAT: 4-5, 3, 1-2). A detractor's answer opens a recovery case "
    "(source `feedback`, its comment as the summary) and fires the gift rules' `detractor` trigger; with "
    '`follows_up_case_id` ("did we put it right?") a detractor\'s answer reopens that case instead. A score '
    "under the survey's `alarm_below` (no survey: the kind's default, NPS 5, CSAT 2) raises `feedback.alarm`."
)


class SurveyController(Controller):
    path = "/v1/surveys"
    tags = ["feedback"]

    @post(
        "/",
        guards=[requires(Permission.CONFIGURE)],
        status_code=201,
        summary="Create an NPS or CSAT survey",
        opt=problems(409),
    )
    async def create_survey(
        self, data: JSONBody[SurveyIn], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[SurveyOut]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.create_survey(work.conn, work.program, data, work.now),
            load="program",
        )

    @get("/", guards=[requires(Permission.READ)], summary="The program's surveys, by key")
    async def list_surveys(
        self, run: Run[Program], status: Annotated[SurveyStatus | None, QueryParameter()] = None
    ) -> SurveyList:
        return await run.read(
            lambda work: service.list_surveys(work.conn, work.program, status), load="program"
        )

    @get("/{key:str}", guards=[requires(Permission.READ)], summary="One survey, its texts in every locale")
    async def get_survey(self, key: FromPath[str], run: Run[Program]) -> SurveyOut:
        return await run.read(lambda work: service.get_survey(work.conn, work.program, key), load="program")

    @patch("/{key:str}", guards=[requires(Permission.CONFIGURE)], summary="Change a survey (or archive it)")
    async def update_survey(
        self, key: FromPath[str], data: JSONBody[SurveyPatch], run: Run[Program]
    ) -> SurveyOut:
        return await run.transaction(
            lambda work: service.update_survey(work.conn, work.program, key, data, work.now), load="program"
        )


class FeedbackController(Controller):
    path = "/v1/feedback"
    tags = ["feedback"]

    @post(
        "/",
        guards=[requires(Permission.RECORD)],
        status_code=201,
        summary="Record an answer the shop collected itself (NPS or CSAT)",
        description=SETS_OFF,
        opt=problems(404),
    )
    async def record_feedback(
        self, data: JSONBody[FeedbackIn], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[FeedbackOut]:
        async def record(work: Work[Program]) -> FeedbackOut:
            return await service.record(work, data)

        return await run.idempotent(idempotency_key, data, record, load="crediting")

    @get("/", guards=[requires(Permission.READ)], summary="Answers, newest first")
    async def list_feedback(
        self,
        run: Run[Program],
        customer: Annotated[str | None, QueryParameter(min_length=1, max_length=128)] = None,
        survey: Annotated[str | None, QueryParameter(min_length=1, max_length=64)] = None,
        category: Annotated[Category | None, QueryParameter()] = None,
        alarm: Annotated[bool | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> FeedbackList:
        async def answers(work: Work[Program]) -> FeedbackList:
            return await service.list_feedback(
                work.conn,
                work.program,
                customer=customer,
                survey=survey,
                category=category,
                alarm=alarm,
                cursor=cursor,
                limit=limit,
            )

        return await run.read(answers, load="program")

    @get("/{feedback_id:str}", guards=[requires(Permission.READ)], summary="One answer and what it set off")
    async def get_feedback(self, feedback_id: FromPath[UUID], run: Run[Program]) -> FeedbackOut:
        return await run.read(
            lambda work: service.get_feedback(work.conn, work.program, feedback_id), load="program"
        )


ANSWER_COOKIE = "encore_answer"
_NO_STORE = {"Cache-Control": "no-store"}
_PROBLEM_STATUS = {"invalid": 404, "expired": 410, "closed": 409}
_PAGES = {
    "s404": "the link is not one of ours (altered or cut short)",
    "s409": "the survey was answered by this link and its week to change the answer is over",
    "s410": "the link was not answered within its 30 days, or its survey is archived",
}
# The field an input problem names -> the page's words for it.
_FORM_ERRORS = {"score": "bad_score", "comment": "bad_comment"}


def _chosen(value: str | None, low: int, high: int) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if low <= number <= high else None


def _page(link: service.Link, csrf: str, *, chosen: int | None, comment: str, ratings: dict[str, int | None],
          error: str | None = None, thanked: bool = False) -> str:  # fmt: skip
    scale = service.scale_of(link.kind)
    answer = link.answer
    until = answer["changeable_until"] if answer else None
    return page.form(
        locale=link.locale,
        shop=link.program.name,
        question=link.question,
        kind=link.kind,
        low=scale.low,
        high=scale.high,
        chosen=chosen,
        dimensions=[(d.key, d.labels[link.locale], ratings.get(d.key)) for d in link.survey.dimensions],
        comment=comment,
        csrf=csrf,
        answered=answer is not None,
        changeable_on=None if until is None else until.astimezone(ZoneInfo(link.program.timezone)).date(),
        error=error,
        thanked=thanked,
    )


def _refused(refused: service.LinkRefused) -> Response[str]:
    return Response(
        page.notice(refused.locale, refused.problem),
        status_code=_PROBLEM_STATUS[refused.problem],
        media_type=MediaType.HTML,
        headers=_NO_STORE,
    )


class AnswerController(Controller):
    """A survey message's answer links: no login, the signed token is the key. GET shows the page with the
    link's score chosen and records nothing (mail scanners open every link); the form's POST records the
    answer (changeable for 7 days). The form carries a token that must match a SameSite=Strict cookie the
    page set (double submit), so no other site can post an answer in the customer's name; the security
    headers forbid framing."""

    path = "/v1/answer"
    tags = ["feedback"]

    @get(
        "/{token:str}",
        media_type=MediaType.HTML,
        summary="A survey link's answer page (records nothing)",
        opt=html_pages(**_PAGES),
    )
    async def answer_page(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        score: Annotated[str | None, QueryParameter(description="the score the link chose")] = None,
    ) -> Response[str]:
        async with db.connection() as conn:
            try:
                link = await service.open_link(conn, settings.signing_key(), token, clock.now())
            except service.LinkRefused as refused:
                return _refused(refused)
        csrf = request.cookies.get(ANSWER_COOKIE) or secrets.token_urlsafe(24)
        scale = service.scale_of(link.kind)
        answer = link.answer
        body = _page(
            link,
            csrf,
            chosen=_chosen(score, scale.low, scale.high) if score else (answer["score"] if answer else None),
            comment=(answer["comment"] or "") if answer else "",
            ratings=dict(answer["dimensions"]) if answer else {},
        )
        return Response(
            body,
            media_type=MediaType.HTML,
            headers=_NO_STORE,
            cookies=[_cookie(request, csrf)],
        )

    @post(
        "/{token:str}",
        status_code=200,
        media_type=MediaType.HTML,
        summary="Answer a survey by its link (the page's form: score, dimension.<key>, comment, csrf)",
        opt=html_pages(
            **_PAGES,
            s403="the form's csrf field does not match the page's cookie (another site's form): nothing recorded",
            s422="the score, a rating or the comment is not valid: the form again, saying which, nothing recorded",
        ),
    )
    async def answer(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Response[str]:
        fields = await _form_fields(request)
        csrf = fields.get("csrf", "")
        cookie = request.cookies.get(ANSWER_COOKIE) or ""
        values = service.LinkAnswer(
            score=fields.get("score"),
            comment=fields.get("comment"),
            dimensions={
                name.removeprefix("dimension."): value
                for name, value in fields.items()
                if name.startswith("dimension.")
            },
        )
        key, now = settings.signing_key(), clock.now()
        if not csrf or not hmac.compare_digest(csrf.encode(), cookie.encode()):
            async with db.connection() as conn:
                try:
                    link = await service.open_link(conn, key, token, now)
                except service.LinkRefused as refused:
                    return _refused(refused)
            return Response(
                page.notice(link.locale, "form_expired"),
                status_code=403,
                media_type=MediaType.HTML,
                headers=_NO_STORE,
            )
        try:
            async with db.transaction() as conn:
                link, work = await service.answer_link(conn, key, token, values, now)
        except service.LinkRefused as refused:
            return _refused(refused)
        except InvalidInput as problem:
            async with db.connection() as conn:
                try:
                    link = await service.open_link(conn, key, token, now)
                except service.LinkRefused as refused:
                    return _refused(refused)
            field = (problem.field or "").split(".")[0]
            scale = service.scale_of(link.kind)
            body = _page(
                link,
                csrf,
                chosen=_chosen(values.score, scale.low, scale.high),
                comment=(values.comment or "")[:MAX_COMMENT_CHARS],
                ratings={k: _chosen(v, 1, 5) for k, v in values.dimensions.items()},
                error=_FORM_ERRORS.get(field, "bad_rating"),
            )
            return Response(body, status_code=422, media_type=MediaType.HTML, headers=_NO_STORE)
        await committed(work)
        answer = link.answer
        assert answer is not None
        body = _page(
            link,
            csrf,
            chosen=answer["score"],
            comment=answer["comment"] or "",
            ratings=dict(answer["dimensions"]),
            thanked=True,
        )
        return Response(body, media_type=MediaType.HTML, headers=_NO_STORE)


async def _form_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The page's form, which is url-encoded: each field's first value. Decoded here, leniently (bytes
    that are not UTF-8 become U+FFFD), not by the framework, whose multipart decoding fails on a part in
    an unknown charset; any other body is no form (so no csrf: refused)."""
    if request.content_type[0] != "application/x-www-form-urlencoded":
        return {}
    fields: dict[str, str] = {}
    for name, value in parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(name, value)
    return fields


def _cookie(request: Request[Any, Any, Any], value: str) -> Cookie:
    return Cookie(
        key=ANSWER_COOKIE,
        value=value,
        path="/v1/answer/",
        max_age=86_400,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
