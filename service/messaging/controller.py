from __future__ import annotations

from html import escape
from typing import Annotated

from litestar import Controller, MediaType, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core import db
from service.core.auth import Permission, requires
from service.core.clock import Clock
from service.core.fields import RowId
from service.core.idempotency import RequiredIdempotencyKeyHeader
from service.core.openapi import problems
from service.core.strict_input import optional_body
from service.core.work import Run, Work
from service.messaging import rendering, service
from service.messaging.delivery import read_unsubscribe_token
from service.messaging.schemas import (
    DraftPreviewIn,
    MessageList,
    MessageOut,
    MessageStatus,
    MessageTypeList,
    MessagingSettings,
    PreviewIn,
    PreviewOut,
    SuppressionIn,
    SuppressionList,
    SuppressionOut,
    TemplateCreate,
    TemplateList,
    TemplateOut,
    TemplateParts,
    TemplateVersionList,
)
from service.programs.service import Program
from service.settings import Settings


class MessagingController(Controller):
    path = "/v1"
    tags = ["messaging"]

    @get(
        "/messaging/settings",
        guards=[requires(Permission.READ)],
        summary="Sender, default locale, quiet hours, caps",
    )
    async def get_settings(self, run: Run[Program]) -> MessagingSettings:
        return await run.read(lambda work: service.get_settings(work.conn, work.program_id))

    @put(
        "/messaging/settings",
        guards=[requires(Permission.ADMINISTER)],
        summary="Replace the messaging settings",
        description="Quiet hours are in each customer's time zone (the program's when the customer has none); "
        "marketing messages beyond the cap are suppressed, those inside the minimum gap deferred.",
    )
    async def put_settings(self, data: JSONBody[MessagingSettings], run: Run[Program]) -> MessagingSettings:
        return await run.transaction(
            lambda work: service.put_settings(work.conn, work.program_id, data, work.now)
        )

    @get(
        "/message-types",
        guards=[requires(Permission.READ)],
        summary="Message types, their category and template variables",
    )
    async def list_message_types(self) -> MessageTypeList:
        return service.message_types()  # the catalogue: no database

    @get(
        "/templates",
        guards=[requires(Permission.READ)],
        summary="The program's own templates (other types use the defaults)",
    )
    async def list_templates(self, run: Run[Program]) -> TemplateList:
        async def templates(work: Work[None]) -> TemplateList:
            return TemplateList(items=await service.list_templates(work.conn, work.program_id))

        return await run.read(templates)

    @post(
        "/templates",
        guards=[requires(Permission.CONFIGURE)],
        status_code=201,
        summary="Override a message type's template in one locale",
        opt=problems(409),
        description="Checked at save: syntax, only the type's variables, and sample renders over numbers that reach "
        "every plural category of the locale; a problem is a 422 naming the part (subject, text, html) and line.",
    )
    async def create_template(
        self, data: JSONBody[TemplateCreate], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[TemplateOut]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.create_template(work.conn, work.program_id, data, work.now),
            before=rendering.render_slot(run.program_id),
        )

    @get(
        "/templates/{template_id:str}",
        guards=[requires(Permission.READ)],
        summary="One template (its current version)",
    )
    async def get_template(self, template_id: FromPath[str], run: Run[Program]) -> TemplateOut:
        return await run.read(lambda work: service.get_template(work.conn, work.program_id, template_id))

    @put(
        "/templates/{template_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        summary="A new version of a template",
    )
    async def update_template(
        self, template_id: FromPath[str], data: JSONBody[TemplateParts], run: Run[Program]
    ) -> TemplateOut:
        return await run.transaction(
            lambda work: service.update_template(work.conn, work.program_id, template_id, data, work.now),
            before=rendering.render_slot(run.program_id),
        )

    @delete(
        "/templates/{template_id:str}",
        guards=[requires(Permission.CONFIGURE)],
        summary="Back to the shipped default",
    )
    async def delete_template(self, template_id: FromPath[str], run: Run[Program]) -> None:
        await run.transaction(
            lambda work: service.delete_template(work.conn, work.program_id, template_id, work.now)
        )

    @get(
        "/templates/{template_id:str}/versions",
        guards=[requires(Permission.READ)],
        summary="Every version, newest first",
    )
    async def template_versions(self, template_id: FromPath[str], run: Run[Program]) -> TemplateVersionList:
        return await run.read(lambda work: service.template_versions(work.conn, work.program_id, template_id))

    @post(
        "/templates/{template_id:str}/preview",
        guards=[requires(Permission.CONFIGURE)],
        status_code=200,
        summary="Render a saved template for a real or a sample customer (writes nothing)",
        opt=optional_body(),
    )
    async def preview_template(
        self, template_id: FromPath[str], data: JSONBody[PreviewIn], run: Run[Program]
    ) -> PreviewOut:
        return await run.read(
            lambda work: service.preview_saved(work.conn, work.program_id, template_id, data, work.now),
            before=rendering.render_slot(run.program_id),
        )

    @post(
        "/templates/preview",
        guards=[requires(Permission.CONFIGURE)],
        status_code=200,
        summary="Render a draft, the program's current template or the default (writes nothing)",
        opt=problems(404),
    )
    async def preview_draft(self, data: JSONBody[DraftPreviewIn], run: Run[Program]) -> PreviewOut:
        return await run.read(
            lambda work: service.preview_draft(work.conn, work.program_id, data, work.now),
            before=rendering.render_slot(run.program_id),
        )

    @get(
        "/messages",
        guards=[requires(Permission.READ)],
        summary="Every message's fate, newest first",
        opt=problems(404),
        description="queued (due_at), deferred (reason, due_at), sent, failed (reason, last_error), suppressed (reason).",
    )
    async def list_messages(
        self,
        run: Run[Program],
        customer: Annotated[str | None, QueryParameter(max_length=128)] = None,
        status: Annotated[MessageStatus | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> MessageList:
        return await run.read(
            lambda work: service.list_messages(work.conn, work.program_id, customer, status, cursor, limit)
        )

    @get("/messages/{message_id:str}", guards=[requires(Permission.READ)], summary="One message")
    async def get_message(self, message_id: FromPath[RowId], run: Run[Program]) -> MessageOut:
        return await run.read(lambda work: service.get_message(work.conn, work.program_id, message_id))

    @get(
        "/suppressions",
        guards=[requires(Permission.READ)],
        summary="Addresses no message goes to (hard bounces, complaints)",
    )
    async def list_suppressions(self, run: Run[Program]) -> SuppressionList:
        return await run.read(lambda work: service.list_suppressions(work.conn, work.program_id))

    @post(
        "/suppressions",
        guards=[requires(Permission.ADMINISTER)],
        status_code=201,
        summary="Add an address (e.g. a hard bounce or complaint your mail provider reported)",
    )
    async def add_suppression(
        self, data: JSONBody[SuppressionIn], run: Run[Program], idempotency_key: RequiredIdempotencyKeyHeader
    ) -> Response[SuppressionOut]:
        return await run.idempotent(
            idempotency_key,
            data,
            lambda work: service.add_suppression(work.conn, work.program_id, data, work.now),
        )

    @delete(
        "/suppressions/{email:str}",
        guards=[requires(Permission.ADMINISTER)],
        summary="Take an address off the list",
    )
    async def remove_suppression(self, email: FromPath[str], run: Run[Program]) -> None:
        await run.transaction(lambda work: service.remove_suppression(work.conn, work.program_id, email))


_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">{body}</body></html>"""


class UnsubscribeController(Controller):
    """The signed link in every message: no login. GET shows a button (mail scanners follow links, so a GET
    never unsubscribes); POST unsubscribes, which is also RFC 8058's one-click request."""

    path = "/v1/unsubscribe"
    tags = ["messaging"]

    @get("/{token:str}", media_type=MediaType.HTML, summary="The unsubscribe page of a message's link")
    async def unsubscribe_page(self, token: FromPath[str], settings: NamedDependency[Settings]) -> str:
        link = read_unsubscribe_token(settings.signing_key(), token)
        what = "news and offers" if link.scope == "marketing" else "all emails"
        body = (
            f'<p>Stop {what} from us?</p><form method="post"><button type="submit" name="List-Unsubscribe" '
            f'value="One-Click">Unsubscribe</button></form>'
        )
        return _PAGE.format(title="Unsubscribe", body=body)

    @post(
        "/{token:str}",
        status_code=200,
        media_type=MediaType.HTML,
        summary="Unsubscribe (RFC 8058 one-click: List-Unsubscribe=One-Click)",
    )
    async def unsubscribe(
        self, token: FromPath[str], settings: NamedDependency[Settings], clock: NamedDependency[Clock]
    ) -> Response[str]:
        async with db.transaction() as conn:
            program, scope = await service.unsubscribe(conn, settings.signing_key(), token, clock.now())
        what = "news and offers" if scope == "marketing" else "any more emails"
        body = f"<p>Done: you will not get {what} from {escape(program)}.</p>"
        return Response(_PAGE.format(title="Unsubscribed", body=body), media_type=MediaType.HTML)
