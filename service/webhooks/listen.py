"""`encore webhooks listen`: a local receiver for development, to watch deliveries arrive."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def listen(host: str, port: int, verifier: Webhook | None, say: Callable[[str], None]) -> None:
    """Receive deliveries on any path, answer 200 and `say` each one (with --secret: whether its Standard
    Webhooks signature verifies). Runs until interrupted."""

    async def receive(request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(text="Encore webhook listener: POST deliveries here\n")
        body = await request.read()
        try:
            event = json.loads(body)
            kind, data = event.get("type", "?"), event.get("data")
            if isinstance(data, dict):  # its id and type are on the line already
                data = {k: v for k, v in data.items() if k not in ("id", "type")}
            data = json.dumps(data, ensure_ascii=False)
        except (ValueError, AttributeError):
            kind, data = "(not JSON)", body.decode("utf-8", "replace")
        line = f"{request.path} {kind} webhook-id={request.headers.get('webhook-id', '-')}"
        if verifier is not None:
            try:
                verifier.verify(body, dict(request.headers), json_parse=False)
                line += " signature verified"
            except (WebhookVerificationError, ValueError) as exc:  # ValueError: a malformed header
                line += f" SIGNATURE INVALID ({exc})"
        say(f"{line}\n  {data[:200]}{'…' if len(data) > 200 else ''}")
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", receive)
    checking = "checking signatures" if verifier is not None else "not checking signatures (no --secret)"
    say(f"listening on http://{host}:{port}/ (any path), {checking}; Ctrl-C stops")
    web.run_app(app, host=host, port=port, print=None, access_log=None)
