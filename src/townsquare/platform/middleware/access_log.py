"""One structured log line per HTTP request: method, route template, status, duration."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townsquare.platform.routes import route_template


class AccessLogMiddleware:
    """Log after the response: the route template (never the raw path or the query string,
    which may carry a token), the status, the duration, the caller's user id and address."""

    def __init__(self, app: ASGIApp, *, logger_name: str = "townsquare.access") -> None:
        self.app = app
        self.logger = logging.getLogger(logger_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # An exception escaping the app becomes a 500 in the outermost error handler.
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            if self.logger.isEnabledFor(logging.INFO):
                self._log(scope, status, time.perf_counter() - start)

    def _log(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        route = route_template(scope)
        client = scope.get("client")
        state = scope.get("state") or {}
        # The record is built here rather than by `logger.info`, which would first walk
        # the stack to find the caller: a cost on every request for a line whose origin
        # is always this one.
        record = logging.LogRecord(
            self.logger.name, logging.INFO, __file__, 0, "%s %s %d", (method, route, status), None
        )
        record.method = method
        record.route = route
        record.status = status
        record.duration_ms = round(seconds * 1000, 2)
        record.client_ip = client[0] if client else None
        record.user_id = state.get("user_id")
        self.logger.handle(record)
