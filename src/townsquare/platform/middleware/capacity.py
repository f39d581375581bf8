"""Bound the HTTP requests a worker serves at once; the probes always get through."""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from townsquare.platform.errors import error_response


class CapacityMiddleware:
    """Answer 503 with `Retry-After` when `limit` HTTP requests are already in flight.

    This replaces uvicorn's `limit_concurrency`, which counts every open connection:
    WebSockets and idle keep-alive connections used it up and the probes answered
    503. Here only HTTP requests being served count; WebSockets have their own budget
    (the /ws endpoint), and `exempt_paths` (liveness, readiness, metrics) are always
    served, so an orchestrator never restarts a worker for being busy.
    """

    def __init__(self, app: ASGIApp, *, limit: int, exempt_paths: Collection[str] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt_paths = frozenset(exempt_paths)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            response = error_response(503, "Server busy, retry shortly", {"Retry-After": "1"})
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
