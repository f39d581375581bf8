"""Count and time every HTTP request, labelled by route template."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townsquare.platform.metrics import Metrics
from townsquare.platform.routes import route_template

# Anything else is folded into one label, so junk methods cannot grow the series count.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # The histogram's child per (method, route), looked up once: `labels()` costs a
        # lock and a tuple of strings on every call. Bounded like the series themselves
        # (known methods x route templates).
        self._durations: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            # WebSockets are counted by the room engine, once per second rather than
            # once per frame, so this layer adds nothing to each delivery.
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        start = time.perf_counter()
        status = 500  # an exception escaping the app ends as a 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.requests_in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            metrics.requests_in_flight.dec()
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            route = route_template(scope)
            key = (method, route)
            duration = self._durations.get(key)
            if duration is None:
                duration = self._durations[key] = metrics.request_duration.labels(method, route)
            duration.observe(time.perf_counter() - start)
            if status >= 500:
                metrics.server_errors.labels(method, route).inc()
