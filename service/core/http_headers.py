"""Security headers, in one place: a `before_send` hook, so every answer has them, error pages and the
answers of middleware (429, 431) included.

- Every answer: `X-Content-Type-Options: nosniff`.
- Every HTML page: a Content-Security-Policy with `frame-ancestors 'none'`, `X-Frame-Options: DENY`
  (browsers without CSP level 2) and `Referrer-Policy: no-referrer` (an unsubscribe URL carries a token).
  Our own pages (unsubscribe) load nothing: `default-src 'none'`, inline styles only (with nothing else
  allowed to load, a style can send nothing anywhere), forms posting back to the page. The API
  reference under /schema (Scalar) is allowed exactly what it loads: its script (and the page's one
  inline script, by its hash), the Litestar stylesheet and icon (from the render plugin's URLs), the
  styles it injects, its fonts from fonts.scalar.com, the document from this origin. Nothing else:
  Scalar's request proxy (proxy.scalar.com) and telemetry are blocked, so an API key typed into "Test
  request" goes to this API only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.types import BeforeMessageSendHookHandler, Message, Scope

PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
SCALAR_FONTS = "https://fonts.scalar.com"
# Litestar's Scalar page has an inline `<script id="api-reference" data-url=...>` holding only this
# whitespace: Scalar reads its attributes, nothing runs, but a policy without its hash logs a violation.
_SCALAR_DATA_SCRIPT = "\n" + " " * 16
_HREF = re.compile(r"""href=["']([^"']+)["']""")
_EVERY = ((b"x-content-type-options", b"nosniff"),)
_PAGES = ((b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"))


def _origin_path(url: str) -> str:
    """A URL as a CSP source: without its query, and with `'` and `;` refused (they would end it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or any(c in url for c in "'; "):
        raise ValueError(f"not a URL a policy can name: {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def script_hash(source: str) -> str:
    """The CSP source allowing exactly this inline script."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()}'"


def docs_policy(config: OpenAPIConfig) -> str:
    """The policy of the API reference pages, from what its render plugin loads."""
    scalar = next(p for p in config.render_plugins if isinstance(p, ScalarRenderPlugin))
    icons = [_origin_path(m) for m in _HREF.findall(scalar.favicon)]
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {_origin_path(scalar.js_url)} {script_hash(_SCALAR_DATA_SCRIPT)}",
            f"style-src {_origin_path(scalar.css_url)} 'unsafe-inline'",
            f"img-src 'self' data: {' '.join(icons)}".rstrip(),
            f"font-src {SCALAR_FONTS}",
            "connect-src 'self'",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(config: OpenAPIConfig) -> BeforeMessageSendHookHandler:
    """The hook for `Litestar(before_send=[...])`."""
    docs_prefix = (config.path or "/schema").rstrip("/")
    docs = docs_policy(config).encode()
    page = PAGE_POLICY.encode()

    async def add(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = list(message.get("headers", ()))
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        headers.extend(_EVERY)
        if content_type.startswith(b"text/html"):
            path: str = scope["path"]
            is_docs = path == docs_prefix or path.startswith(docs_prefix + "/")
            headers.append((b"content-security-policy", docs if is_docs else page))
            headers.extend(_PAGES)
        message["headers"] = headers

    return add
