"""A local Stripe API for the tests and the bench: a real HTTP server on 127.0.0.1 (a free port, a thread)
that the official `stripe` SDK talks to, serving objects built from Stripe's own fixtures
(`tests/support/stripe/fixtures3.json`, a copy of `../shared/stripe/fixtures3.json`: Stripe's own, MIT,
its LICENSE beside it) with the fields a test sets replacing theirs (top-level keys),
recording every request, and failing as scripted. Also: Stripe events, signed as Stripe signs them.

    with StripeStub() as stub:
        stub.add_session("cs_1", payment_status="paid", line_items=[line_item(1500, 2, sku="TEE")])
        client = stub.client()  # a StripeClient whose base URL is the stub
        session = await client.v1.checkout.sessions.retrieve_async("cs_1")
        stub.fail(500, times=2)  # the next two requests answer 500

What it serves: GET /v1/checkout/sessions (a list: what a key check asks), GET /v1/checkout/sessions/{id} (`expand[]` of `line_items`, `total_details.breakdown`,
`customer`, `discounts.promotion_code`, ...), GET /v1/checkout/sessions/{id}/line_items (a list:
`limit`, `starting_after`; `expand[]=data.price.product`), GET /v1/balance, GET /v1/account,
POST /v1/coupons, GET /v1/coupons/{id}, POST /v1/promotion_codes, GET/POST /v1/promotion_codes/{id},
GET /v1/customers/{id}. Expansion is generic: an id at an expanded path whose object the stub holds
is replaced by that object. Idempotency as Stripe: the same `Idempotency-Key` on the same method and
path answers the first response again (`Idempotent-Replayed: true`); other parameters under the same
key are a 400 `idempotency_error`. Injected failures are not remembered under a key (they stand for
errors before Stripe runs the request), so a retry with the same key succeeds once they are spent.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

FIXTURES = Path(
    os.environ.get("ENCORE_STRIPE_FIXTURES") or Path(__file__).resolve().parent / "stripe" / "fixtures3.json"
)
API_KEY = "sk_test_encore_stub"
REFUSED_KEY = "sk_test_refused_by_the_stub"  # answered 401, as Stripe answers an invalid key
WEBHOOK_SECRET = "whsec_encore_stub_secret"


@cache
def _fixtures() -> dict[str, Any]:
    resources: dict[str, Any] = json.loads(FIXTURES.read_text())["resources"]
    return resources


def fixture(resource: str, /, **fields: Any) -> dict[str, Any]:
    """A copy of Stripe's fixture object `resource` ("checkout.session", "refund", "charge", ...) with `fields`
    replacing its top-level keys."""
    obj: dict[str, Any] = copy.deepcopy(_fixtures()[resource])
    obj.update(copy.deepcopy(fields))
    return obj


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# --- objects -----------------------------------------------------------------------------------------


def product(id: str | None = None, name: str = "T-shirt", **fields: Any) -> dict[str, Any]:
    return fixture("product", id=id or new_id("prod"), name=name, created=int(time.time()), **fields)


def line_item(
    unit_amount: int,
    quantity: int = 1,
    *,
    name: str = "T-shirt",
    sku: str | None = None,
    category: str | None = None,
    product_id: str | None = None,
    product_metadata: dict[str, str] | None = None,
    currency: str = "eur",
    amount_discount: int = 0,
    amount_tax: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    """A Checkout line item (`item`) whose price's product carries `metadata` (`sku`, `category` and
    `product_metadata`): the stub registers the product and serves it as an id unless expanded."""
    metadata = dict(product_metadata or {})
    if sku is not None:
        metadata["sku"] = sku
    if category is not None:
        metadata["category"] = category
    prod = product(product_id, name=name, metadata=metadata)
    price = fixture(
        "price",
        id=new_id("price"),
        currency=currency,
        unit_amount=unit_amount,
        unit_amount_decimal=str(unit_amount),
        type="one_time",
        recurring=None,
        product=prod,  # the stub keeps the object and serves its id unless expanded
    )
    subtotal = unit_amount * quantity
    return fixture(
        "item",
        id=new_id("li"),
        description=name,
        currency=currency,
        quantity=quantity,
        price=price,
        amount_subtotal=subtotal,
        amount_discount=amount_discount,
        amount_tax=amount_tax,
        amount_total=subtotal - amount_discount + amount_tax,
        adjustable_quantity=None,
        **fields,
    )


def checkout_session(
    id: str | None = None, line_items: list[dict[str, Any]] | None = None, **fields: Any
) -> dict[str, Any]:
    """A completed, paid payment-mode Checkout Session in euros; the amounts follow `line_items` unless
    set. The fixture's nonsense (huge shipping cost, a currency conversion) is cleared."""
    items = line_items or []
    subtotal = sum(int(i.get("amount_subtotal") or 0) for i in items)
    details = {
        "amount_discount": 0,
        "amount_shipping": 0,
        "amount_tax": 0,
        **(fields.pop("total_details", None) or {}),
    }
    shipping = int(details.get("amount_shipping") or 0)
    base: dict[str, Any] = {
        "id": id or new_id("cs_test"),
        "created": int(time.time()),
        "expires_at": int(time.time()) + 86400,
        "currency": items[0]["currency"] if items else "eur",
        "status": "complete",
        "payment_status": "paid",
        "mode": "payment",
        "amount_subtotal": subtotal,
        "total_details": details,
        "shipping_cost": None,
        "currency_conversion": None,
        "shipping_address_collection": None,
        "collected_information": None,
        "payment_intent": new_id("pi"),
        "discounts": [],
        "url": None,
    }
    base["amount_total"] = (
        subtotal - int(details.get("amount_discount") or 0) + shipping + int(details.get("amount_tax") or 0)
    )
    base.update(fields)
    return fixture("checkout.session", **base)


def customer(id: str | None = None, **fields: Any) -> dict[str, Any]:
    return fixture("customer", id=id or new_id("cus"), discount=None, created=int(time.time()), **fields)


def event(
    type: str,
    data_object: dict[str, Any],
    livemode: bool = False,
    id: str | None = None,
    *,
    created: int | None = None,
    previous_attributes: dict[str, Any] | None = None,
    api_version: str | None = None,
) -> dict[str, Any]:
    """An event envelope (Stripe's `event` fixture) around `data_object`."""
    data: dict[str, Any] = {"object": copy.deepcopy(data_object)}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return fixture(
        "event",
        id=id or new_id("evt"),
        type=type,
        data=data,
        livemode=livemode,
        created=int(time.time()) if created is None else created,
        api_version=api_version or stripe.api_version,
        pending_webhooks=1,
    )


def signed_event(payload: dict[str, Any], secret: str, timestamp: int | None = None) -> tuple[bytes, str]:
    """The body and the `Stripe-Signature` header Stripe would send for `payload` (`t=...,v1=...`)."""
    body = json.dumps(payload, indent=2)
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=int(time.time()) if timestamp is None else timestamp
    )
    return body.encode(), header


# --- form bodies ---------------------------------------------------------------------------------------


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`restrictions[minimum_amount]=1000&expand[0]=a&expand[]=b` -> nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "" and isinstance(node, dict):  # `a[]`: append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    decoded: dict[str, Any] = _listify(root)
    return decoded


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _bool(value: Any) -> bool | None:
    return None if value in (None, "") else str(value).lower() == "true"


# --- the server ----------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, Any]
    form: dict[str, Any]  # the decoded form body (nested)
    headers: dict[str, str]  # lower-case names
    status: int = 0  # what the stub answered
    body: bytes = b""

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def api_key(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

    @property
    def expand(self) -> list[str]:
        value = self.form.get("expand", self.query.get("expand", []))
        if isinstance(value, str):
            return [value]
        return list(value.values()) if isinstance(value, dict) else list(value)


@dataclass
class Failure:
    status: int  # 0: close the connection without answering
    times: int | None  # None: until cleared
    path: str | None  # a regular expression matched against the path (re.search)
    method: str | None
    error: dict[str, Any]
    headers: dict[str, str]


class StripeError(Exception):
    def __init__(self, status: int, type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.body = status, {"error": {"type": type, "message": message, **extra}}


def _missing(kind: str, id: str, param: str = "id") -> StripeError:
    return StripeError(
        404, "invalid_request_error", f"No such {kind}: '{id}'", code="resource_missing", param=param
    )


@dataclass
class StripeStub:
    requests: list[Request] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # everything, by id
    line_items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # session id -> items
    refused_keys: set[str] = field(default_factory=lambda: {REFUSED_KEY})
    failures: list[Failure] = field(default_factory=list)
    livemode: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    _idempotent: dict[tuple[str, str, str], tuple[str, int, bytes]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _clients: list[stripe.HTTPXClient] = field(default_factory=list)
    _port: int = 0

    # lifecycle

    def __enter__(self) -> StripeStub:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    async def __aenter__(self) -> StripeStub:
        return self.start()

    async def __aexit__(self, *_: Any) -> None:
        """Stops, and closes the HTTP clients `client()` made (their pooled connections)."""
        self.stop()
        for http in self._clients:
            await http.close_async()  # type: ignore[no-untyped-call]
        self._clients.clear()

    def start(self) -> StripeStub:
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True, name="stripe-stub"
        ).start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until `start()` (the same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """Stripe unreachable (connections refused) inside the block."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def client(self, api_key: str = API_KEY, **options: Any) -> stripe.StripeClient:
        """A `StripeClient` aimed at the stub (httpx for both sync and async calls; no retries unless
        `max_network_retries` is given)."""
        options.setdefault("max_network_retries", 0)
        if "http_client" not in options:
            options["http_client"] = stripe.HTTPXClient()
            self._clients.append(options["http_client"])
        return stripe.StripeClient(api_key, base_addresses={"api": self.url}, **options)

    # scripting

    def fail(
        self,
        status: int,
        times: int | None = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        type: str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        """Answer `status` with Stripe's error shape to the next `times` matching requests (None: all until
        `clear_failures`). 0 closes the connection without an answer. `path` is a regex on the path."""
        kind = type or {
            400: "invalid_request_error",
            401: "invalid_request_error",
            402: "card_error",
            429: "invalid_request_error",
        }.get(status, "api_error")
        text = message or {
            429: "Too many requests hit the API too quickly.",
            400: "Invalid request (injected).",
        }.get(status, "Something went wrong on Stripe's end (injected).")
        if status == 429:
            extra.setdefault("code", "rate_limit")
        with self.lock:
            self.failures.append(
                Failure(
                    status,
                    times,
                    path,
                    method and method.upper(),
                    {"type": kind, "message": text, **extra},
                    headers or {},
                )
            )

    def clear_failures(self) -> None:
        with self.lock:
            self.failures.clear()

    def reset(self) -> None:
        """Forget every object, request, failure and idempotency key (a stub shared by many tests)."""
        with self.lock:
            self.requests.clear()
            self.objects.clear()
            self.line_items.clear()
            self.failures.clear()
            self._idempotent.clear()
            self.refused_keys = {REFUSED_KEY}
            self.livemode = False

    def refuse_key(self, key: str) -> None:
        with self.lock:
            self.refused_keys.add(key)

    # objects

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.objects[obj["id"]] = obj
        return obj

    def add_session(
        self, id: str | None = None, *, line_items: list[dict[str, Any]] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Register a Checkout Session (see `checkout_session`) and its line items; returns the session as
        an event carries it (no line items, ids for expandable fields)."""
        session = checkout_session(id, line_items, **fields)
        with self.lock:
            self.line_items[session["id"]] = [self._store_item(i) for i in line_items or []]
            self.add(session)
        return copy.deepcopy(session)

    def add_customer(self, id: str | None = None, **fields: Any) -> dict[str, Any]:
        return copy.deepcopy(self.add(customer(id, **fields)))

    def _store_item(self, item: dict[str, Any]) -> dict[str, Any]:
        item = copy.deepcopy(item)
        prod = item.get("price", {}).get("product")
        if isinstance(prod, dict):
            self.add(prod)
            item["price"]["product"] = prod["id"]
        return item

    def get(self, id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.objects[id])

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The stub's objects of one `object` kind ("coupon", "promotion_code", ...), oldest first."""
        with self.lock:
            return [copy.deepcopy(o) for o in self.objects.values() if o.get("object") == kind]

    def requests_to(self, path: str, method: str | None = None) -> list[Request]:
        """The recorded requests whose path matches the regex `path` (re.fullmatch)."""
        with self.lock:
            return [
                r
                for r in self.requests
                if re.fullmatch(path, r.path) and (method is None or r.method == method.upper())
            ]

    # handling

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm each answer waits ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def _serve(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                parts = urlsplit(self.path)
                request = Request(
                    method=method,
                    path=parts.path,
                    query=decode_form(parse_qsl(parts.query, keep_blank_values=True)),
                    form=decode_form(parse_qsl(raw.decode(), keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=raw,
                )
                status, headers, body = stub._answer(request)
                if status == 0:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Request-Id", new_id("req"))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _answer(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append(request)
            status, headers, body = self._respond(request)
            request.status = status
            return status, headers, body

    def _respond(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        for failure in self.failures:
            if (failure.path is None or re.search(failure.path, request.path)) and failure.method in (
                None,
                request.method,
            ):
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self.failures.remove(failure)
                return failure.status, failure.headers, json.dumps({"error": failure.error}).encode()
        key = request.api_key
        if key is None or key in self.refused_keys:
            shown = f"{key[:8]}{'*' * 12}{key[-4:]}" if key else ""
            error = StripeError(
                401,
                "invalid_request_error",
                f"Invalid API Key provided: {shown}" if key else "You did not provide an API key.",
            )
            return 401, {}, json.dumps(error.body).encode()
        slot = None
        if request.idempotency_key and request.method == "POST":
            slot = (request.idempotency_key, request.method, request.path)
            if slot in self._idempotent:
                raw, status, body = self._idempotent[slot]
                if raw != request.body.decode():
                    error = StripeError(
                        400,
                        "idempotency_error",
                        f"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{request.idempotency_key}' if you meant to execute a different request.",
                    )
                    return 400, {}, json.dumps(error.body).encode()
                return (
                    status,
                    {"Idempotent-Replayed": "true", "Idempotency-Key": slot[0]},
                    body,
                )
        try:
            status, obj = 200, self._route(request)
        except StripeError as error:
            status, obj = error.status, error.body
        body = json.dumps(obj).encode()
        if slot is not None:
            self._idempotent[slot] = (request.body.decode(), status, body)
        headers = {"Idempotency-Key": slot[0]} if slot else {}
        return status, headers, body

    def _route(self, r: Request) -> dict[str, Any]:
        m = re.fullmatch(r"/v1/checkout/sessions/([^/]+)(/line_items)?", r.path)
        if m and r.method == "GET":
            session_id = m.group(1)
            if session_id not in self.objects or self.objects[session_id].get("object") != "checkout.session":
                raise _missing("checkout.session", session_id, "session")
            if m.group(2):
                return self._line_items(session_id, r.query, r.expand)
            return self._view(self.objects[session_id], r.expand, session_id=session_id)
        if r.path == "/v1/checkout/sessions" and r.method == "GET":  # what a key check lists
            sessions = [o for o in self.objects.values() if o.get("object") == "checkout.session"]
            limit = _int(r.query.get("limit")) or 10
            return {
                "object": "list",
                "data": [self._view(s, []) for s in sessions[:limit]],
                "has_more": len(sessions) > limit,
                "url": "/v1/checkout/sessions",
            }
        if r.path == "/v1/balance" and r.method == "GET":
            return fixture("balance", livemode=self.livemode)
        if r.path == "/v1/account" and r.method == "GET":
            return fixture("account")
        if r.path == "/v1/coupons" and r.method == "POST":
            return self._create_coupon(r.form)
        if r.path == "/v1/promotion_codes" and r.method == "POST":
            return self._create_promotion_code(r.form)
        if r.path == "/v1/promotion_codes" and r.method == "GET":  # filtered by `code`, as Stripe does
            wanted = r.query.get("code")
            codes = [
                self._view(o, [])
                for o in self.objects.values()
                if o.get("object") == "promotion_code" and (wanted is None or o["code"] == wanted)
            ]
            limit = _int(r.query.get("limit")) or 10
            return {"object": "list", "data": codes[:limit], "has_more": len(codes) > limit, "url": r.path}
        m = re.fullmatch(r"/v1/(coupons|promotion_codes|customers)/([^/]+)", r.path)
        if m:
            kind = {"coupons": "coupon", "promotion_codes": "promotion_code", "customers": "customer"}[
                m.group(1)
            ]
            obj = self.objects.get(m.group(2))
            if obj is None or obj.get("object") != kind:
                raise _missing(kind, m.group(2))
            if r.method == "POST" and kind == "promotion_code":
                self._update_promotion_code(obj, r.form)
            elif r.method != "GET":
                raise StripeError(
                    404, "invalid_request_error", f"Unrecognized request URL ({r.method}: {r.path})."
                )
            return self._view(obj, r.expand)
        raise StripeError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({r.method}: {r.path}). (the Stripe stub does not serve it)",
        )

    def _line_items(self, session_id: str, query: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        items = self.line_items.get(session_id, [])
        limit = _int(query.get("limit")) or 10
        after = query.get("starting_after")
        if after:
            ids = [i["id"] for i in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        page = [
            self._view(i, [e.removeprefix("data.") for e in expand if e.startswith("data.")])
            for i in items[:limit]
        ]
        return {
            "object": "list",
            "data": page,
            "has_more": len(items) > limit,
            "url": f"/v1/checkout/sessions/{session_id}/line_items",
        }

    def _view(self, obj: dict[str, Any], expand: list[str], session_id: str | None = None) -> dict[str, Any]:
        """A copy of `obj` as the API shows it: `line_items` and `total_details.breakdown` only when
        expanded, and each expanded id replaced by the object."""
        out = copy.deepcopy(obj)
        details = out.get("total_details")
        if isinstance(details, dict) and "total_details.breakdown" not in expand:
            details.pop("breakdown", None)
        inner = [p.removeprefix("line_items.") for p in expand if p.startswith("line_items.")]
        for path in expand:
            if path.split(".")[0] == "line_items" and session_id is not None:
                # `line_items` and `line_items.data.price.product` include the first page of items
                out["line_items"] = self._line_items(session_id, {}, inner)
                continue
            self._expand(out, path.split("."))
        return out

    def _expand(self, node: Any, parts: list[str]) -> Any:
        if isinstance(node, list):
            return [self._expand(n, parts) for n in node]
        if isinstance(node, dict) and parts and parts[0] in node:
            node[parts[0]] = self._resolve(node[parts[0]], parts[1:])
        return node

    def _resolve(self, value: Any, rest: list[str]) -> Any:
        if isinstance(value, list):
            return [self._resolve(v, rest) for v in value]
        if isinstance(value, str) and value in self.objects:
            value = copy.deepcopy(self.objects[value])
        return self._expand(value, rest) if rest else value

    def _create_coupon(self, form: dict[str, Any]) -> dict[str, Any]:
        amount_off, percent_off = _int(form.get("amount_off")), form.get("percent_off")
        if (amount_off is None) == (percent_off is None):
            raise StripeError(
                400, "invalid_request_error", "You must pass exactly one of amount_off or percent_off."
            )
        if amount_off is not None and not form.get("currency"):
            raise StripeError(
                400,
                "invalid_request_error",
                "You must pass currency when passing amount_off.",
                param="currency",
            )
        duration = form.get("duration", "once")
        if duration not in ("once", "repeating", "forever"):
            raise StripeError(400, "invalid_request_error", f"Invalid duration: {duration}", param="duration")
        id = form.get("id") or secrets.token_hex(4).upper()
        if id in self.objects:
            raise StripeError(
                400, "invalid_request_error", "Coupon already exists.", code="resource_already_exists"
            )
        coupon = fixture(
            "coupon",
            id=id,
            amount_off=amount_off,
            percent_off=float(percent_off) if percent_off is not None else None,
            currency=form.get("currency") if amount_off is not None else None,
            duration=duration,
            duration_in_months=_int(form.get("duration_in_months")),
            max_redemptions=_int(form.get("max_redemptions")),
            redeem_by=_int(form.get("redeem_by")),
            name=form.get("name"),
            metadata=form.get("metadata", {}),
            created=int(time.time()),
            livemode=self.livemode,
        )
        if "applies_to" in form:
            coupon["applies_to"] = form["applies_to"]
        return copy.deepcopy(self.add(coupon))

    def _create_promotion_code(self, form: dict[str, Any]) -> dict[str, Any]:
        if "coupon" in form:  # the parameter before the API's `promotion` (SDK 16)
            raise StripeError(
                400, "invalid_request_error", "Received unknown parameter: coupon", param="coupon"
            )
        promotion = form.get("promotion") or {}
        if promotion.get("type") != "coupon" or not promotion.get("coupon"):
            raise StripeError(
                400,
                "invalid_request_error",
                "Missing required param: promotion[coupon].",
                param="promotion[coupon]",
            )
        coupon = self.objects.get(promotion["coupon"])
        if coupon is None or coupon.get("object") != "coupon":
            raise _missing("coupon", promotion["coupon"], "promotion[coupon]")
        code = form.get("code") or secrets.token_hex(4).upper()
        if any(
            o.get("object") == "promotion_code" and o["active"] and o["code"].lower() == code.lower()
            for o in self.objects.values()
        ):
            raise StripeError(
                400,
                "invalid_request_error",
                f"An active promotion code with `code: {code}` already exists.",
                param="code",
            )
        if form.get("customer") and form["customer"] not in self.objects:
            raise _missing("customer", form["customer"], "customer")
        restrictions = form.get("restrictions") or {}
        return copy.deepcopy(
            self.add(
                fixture(
                    "promotion_code",
                    id=new_id("promo"),
                    code=code,
                    active=_bool(form.get("active")) is not False,
                    customer=form.get("customer"),
                    expires_at=_int(form.get("expires_at")),
                    max_redemptions=_int(form.get("max_redemptions")),
                    metadata=form.get("metadata", {}),
                    promotion={"type": "coupon", "coupon": coupon["id"]},
                    restrictions={
                        "first_time_transaction": bool(_bool(restrictions.get("first_time_transaction"))),
                        "minimum_amount": _int(restrictions.get("minimum_amount")),
                        "minimum_amount_currency": restrictions.get("minimum_amount_currency"),
                    },
                    created=int(time.time()),
                    livemode=self.livemode,
                )
            )
        )

    def _update_promotion_code(self, obj: dict[str, Any], form: dict[str, Any]) -> None:
        if "active" in form:
            obj["active"] = bool(_bool(form["active"]))
        if "metadata" in form:
            obj["metadata"] = {**obj.get("metadata", {}), **form["metadata"]}

    # appended helpers (tests of the inbound side)

    def update(self, id: str, **fields: Any) -> dict[str, Any]:
        """Change top-level fields of an object the stub holds (a session paid later, ...); returns a copy."""
        with self.lock:
            self.objects[id].update(copy.deepcopy(fields))
            return copy.deepcopy(self.objects[id])

    def forget(self, id: str) -> None:
        """Stripe no longer knows the object (and a session's line items): a 404 from now on."""
        with self.lock:
            self.objects.pop(id, None)
            self.line_items.pop(id, None)

    @contextmanager
    def held(self, path: str) -> Iterator[tuple[threading.Event, threading.Event]]:
        """The first request whose path matches `path` (re.search) waits, unanswered, until `release` is set
        (or the block ends); `arrived` is set when it came. Other requests are answered meanwhile (a slow
        Stripe for one caller)."""
        arrived, release = threading.Event(), threading.Event()
        answer = self._answer
        taken = threading.Lock()

        def held_answer(request: Request) -> tuple[int, dict[str, str], bytes]:
            if re.search(path, request.path) and taken.acquire(blocking=False):
                arrived.set()
                release.wait(30)
            return answer(request)

        self._answer = held_answer  # type: ignore[method-assign]
        try:
            yield arrived, release
        finally:
            release.set()
            del self._answer  # the method again
