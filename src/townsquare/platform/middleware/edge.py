"""The outermost layer: what every request gets, in one pass.

Each HTTP request gets an id (the caller's `X-Request-ID` when well-formed, else a new
one) that every log record of the request carries and the response echoes; the
security headers; a count and a duration in the metrics, labelled by route template;
and one structured access-log line after the response (method, route template, never
the raw path or the query string, which may carry a token; status, duration, user id,
client address).

These were five stacked middlewares, each with its own coroutine and its own wrapper
around `send`; together they cost more than the rest of a cached read. Here they share
one coroutine and one wrapper (`python -m bench.http_read --layers` measures each layer
of the stack).

Liveness probes (`answers`: `/health`, `/live`) are answered here, from bytes encoded
once, with the same headers, metrics and log line: they exist to say that the process
and its event loop answer, and asking routing, dependency solving and the exception
layers every time (several times the cost of the answer) would say nothing more. The
routes stay registered, so they are documented and serve what this layer passes on: a
`HEAD`, and a browser's cross-origin request (an `Origin` header), which goes the whole
way, through CORS.

WebSocket handshakes get their request id and go straight to their endpoint (the
`websocket_routes` given): the layers below (Starlette's exception middleware, its route
wrapper) would each wrap `send` once more, for every frame the socket sends, for
nothing, since a socket's errors are its own close codes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townsquare.platform.logging import AccessLog
from townsquare.platform.metrics import Metrics
from townsquare.platform.middleware.request_id import HEADER, bind_request_id
from townsquare.platform.routes import route_template

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HSTS = "max-age=31536000; includeSubDomains"
_REQUEST_ID_NAME = HEADER.encode("latin-1")


def security_headers(*, hsts: bool) -> list[tuple[bytes, bytes]]:
    """HSTS (when `hsts`), nosniff, frame denial, referrer and opener policies, a
    permissions policy and the CSP, as raw (lower-case name, value) pairs."""
    headers = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "strict-origin-when-cross-origin",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=()",
    }
    if hsts:
        headers["strict-transport-security"] = HSTS
    headers["content-security-policy"] = CONTENT_SECURITY_POLICY
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        hsts: bool,
        websocket_routes: Mapping[str, ASGIApp],
        answers: Mapping[str, bytes] | None = None,
        logger_name: str = "townsquare.access",
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.headers = security_headers(hsts=hsts)
        self.websocket_routes = dict(websocket_routes)
        # GET path -> the head of its JSON answer (without the request id) and its body.
        self.answers = {
            path: (
                [
                    (b"content-length", str(len(body)).encode("latin-1")),
                    (b"content-type", b"application/json"),
                    *self.headers,
                ],
                body,
            )
            for path, body in (answers or {}).items()
        }
        self.access = AccessLog(logger_name)
        self._durations: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
            return
        if kind == "websocket":
            bind_request_id(scope)
            endpoint = self.websocket_routes.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        request_id = bind_request_id(scope)
        request_id_header = (_REQUEST_ID_NAME, request_id.encode("latin-1"))
        answer = self.answers.get(scope["path"])
        if answer is not None and scope["method"] == "GET" and not _has_origin(scope):
            await self._answer(scope, send, answer, request_id_header, start)
            return
        added = [*self.headers, request_id_header]
        status = 500  # an exception escaping the app ends as a 500

        async def send_at_the_edge(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                # Headers the app already set on a response are left alone.
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in added if header[0] not in present)
                message["headers"] = headers
            await send(message)

        in_flight = self.metrics.requests_in_flight
        in_flight.inc()
        try:
            await self.app(scope, receive, send_at_the_edge)
        finally:
            in_flight.dec()
            self._record(scope, status, time.perf_counter() - start)

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        answer: tuple[list[tuple[bytes, bytes]], bytes],
        request_id_header: tuple[bytes, bytes],
        start: float,
    ) -> None:
        head, body = answer
        status = 500  # a failed send (the client left) counts as the app's would
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*head, request_id_header],
                }
            )
            await send({"type": "http.response.body", "body": body})
            status = 200
        finally:
            self._record(scope, status, time.perf_counter() - start, scope["path"])

    def _record(self, scope: Scope, status: int, seconds: float, route: str | None = None) -> None:
        method = scope["method"]
        route = route or route_template(scope)
        label = method if method in KNOWN_METHODS else "OTHER"
        key = (label, route)
        duration = self._durations.get(key)
        if duration is None:
            duration = self._durations[key] = self.metrics.request_duration.labels(label, route)
        duration.observe(seconds)
        if status >= 500:
            self.metrics.server_errors.labels(label, route).inc()
        client = scope.get("client")
        self.access.log(
            method=method,
            route=route,
            status=status,
            seconds=seconds,
            client_ip=client[0] if client else None,
            user_id=(scope.get("state") or {}).get("user_id"),
        )
