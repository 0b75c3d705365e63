from __future__ import annotations

from html import escape
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from service.core import db
from service.core.auth import Principal, requires
from service.core.clock import Clock
from service.core.fields import RowId
from service.core.openapi import problems
from service.core.strict_input import optional_body
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
from service.settings import Settings


class MessagingController(Controller):
    path = "/v1"
    tags = ["messaging"]

    @get(
        "/messaging/settings", guards=[requires("read")], summary="Sender, default locale, quiet hours, caps"
    )
    async def get_settings(self, request: Request[Principal, Any, Any]) -> MessagingSettings:
        async with db.connection() as conn:
            return await service.get_settings(conn, request.user.program_id)

    @put(
        "/messaging/settings",
        guards=[requires("admin")],
        summary="Replace the messaging settings",
        description="Quiet hours are in each customer's time zone (the program's when the customer has none); "
        "marketing messages beyond the cap are suppressed, those inside the minimum gap deferred.",
    )
    async def put_settings(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[MessagingSettings],
        clock: NamedDependency[Clock],
    ) -> MessagingSettings:
        async with db.transaction() as conn:
            return await service.put_settings(conn, request.user.program_id, data, clock.now())

    @get(
        "/message-types",
        guards=[requires("read")],
        summary="Message types, their category and template variables",
    )
    async def list_message_types(self) -> MessageTypeList:
        return service.message_types()

    @get(
        "/templates",
        guards=[requires("read")],
        summary="The program's own templates (other types use the defaults)",
    )
    async def list_templates(self, request: Request[Principal, Any, Any]) -> TemplateList:
        async with db.connection() as conn:
            return TemplateList(items=await service.list_templates(conn, request.user.program_id))

    @post(
        "/templates",
        guards=[requires("admin")],
        status_code=201,
        summary="Override a message type's template in one locale",
        opt=problems(409),
        description="Checked at save: syntax, only the type's variables, and sample renders over numbers that reach "
        "every plural category of the locale; a problem is a 422 naming the part (subject, text, html) and line.",
    )
    async def create_template(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[TemplateCreate],
        clock: NamedDependency[Clock],
    ) -> TemplateOut:
        async with rendering.render_slot(request.user.program_id), db.transaction() as conn:
            return await service.create_template(conn, request.user.program_id, data, clock.now())

    @get(
        "/templates/{template_id:str}",
        guards=[requires("read")],
        summary="One template (its current version)",
    )
    async def get_template(
        self, request: Request[Principal, Any, Any], template_id: FromPath[str]
    ) -> TemplateOut:
        async with db.connection() as conn:
            return await service.get_template(conn, request.user.program_id, template_id)

    @put("/templates/{template_id:str}", guards=[requires("admin")], summary="A new version of a template")
    async def update_template(
        self,
        request: Request[Principal, Any, Any],
        template_id: FromPath[str],
        data: JSONBody[TemplateParts],
        clock: NamedDependency[Clock],
    ) -> TemplateOut:
        async with rendering.render_slot(request.user.program_id), db.transaction() as conn:
            return await service.update_template(
                conn, request.user.program_id, template_id, data, clock.now()
            )

    @delete("/templates/{template_id:str}", guards=[requires("admin")], summary="Back to the shipped default")
    async def delete_template(
        self, request: Request[Principal, Any, Any], template_id: FromPath[str], clock: NamedDependency[Clock]
    ) -> None:
        async with db.transaction() as conn:
            await service.delete_template(conn, request.user.program_id, template_id, clock.now())

    @get(
        "/templates/{template_id:str}/versions",
        guards=[requires("read")],
        summary="Every version, newest first",
    )
    async def template_versions(
        self, request: Request[Principal, Any, Any], template_id: FromPath[str]
    ) -> TemplateVersionList:
        async with db.connection() as conn:
            return await service.template_versions(conn, request.user.program_id, template_id)

    @post(
        "/templates/{template_id:str}/preview",
        guards=[requires("admin")],
        status_code=200,
        summary="Render a saved template for a real or a sample customer (writes nothing)",
        opt=optional_body(),
    )
    async def preview_template(
        self,
        request: Request[Principal, Any, Any],
        template_id: FromPath[str],
        data: JSONBody[PreviewIn],
        clock: NamedDependency[Clock],
    ) -> PreviewOut:
        async with rendering.render_slot(request.user.program_id), db.connection() as conn:
            return await service.preview_saved(conn, request.user.program_id, template_id, data, clock.now())

    @post(
        "/templates/preview",
        guards=[requires("admin")],
        status_code=200,
        summary="Render a draft, the program's current template or the default (writes nothing)",
        opt=problems(404),
    )
    async def preview_draft(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[DraftPreviewIn],
        clock: NamedDependency[Clock],
    ) -> PreviewOut:
        async with rendering.render_slot(request.user.program_id), db.connection() as conn:
            return await service.preview_draft(conn, request.user.program_id, data, clock.now())

    @get(
        "/messages",
        guards=[requires("read")],
        summary="Every message's fate, newest first",
        opt=problems(404),
        description="queued (due_at), deferred (reason, due_at), sent, failed (reason, last_error), suppressed (reason).",
    )
    async def list_messages(
        self,
        request: Request[Principal, Any, Any],
        customer: Annotated[str | None, QueryParameter(max_length=128)] = None,
        status: Annotated[MessageStatus | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> MessageList:
        async with db.connection() as conn:
            return await service.list_messages(conn, request.user.program_id, customer, status, cursor, limit)

    @get("/messages/{message_id:str}", guards=[requires("read")], summary="One message")
    async def get_message(
        self, request: Request[Principal, Any, Any], message_id: FromPath[RowId]
    ) -> MessageOut:
        async with db.connection() as conn:
            return await service.get_message(conn, request.user.program_id, message_id)

    @get(
        "/suppressions",
        guards=[requires("read")],
        summary="Addresses no message goes to (hard bounces, complaints)",
    )
    async def list_suppressions(self, request: Request[Principal, Any, Any]) -> SuppressionList:
        async with db.connection() as conn:
            return await service.list_suppressions(conn, request.user.program_id)

    @post(
        "/suppressions",
        guards=[requires("admin")],
        status_code=201,
        summary="Add an address (e.g. a hard bounce or complaint your mail provider reported)",
    )
    async def add_suppression(
        self,
        request: Request[Principal, Any, Any],
        data: JSONBody[SuppressionIn],
        clock: NamedDependency[Clock],
    ) -> SuppressionOut:
        async with db.transaction() as conn:
            return await service.add_suppression(conn, request.user.program_id, data, clock.now())

    @delete("/suppressions/{email:str}", guards=[requires("admin")], summary="Take an address off the list")
    async def remove_suppression(self, request: Request[Principal, Any, Any], email: FromPath[str]) -> None:
        async with db.transaction() as conn:
            await service.remove_suppression(conn, request.user.program_id, email)


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
