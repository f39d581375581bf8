"""OPTIONS and 405 answers that name every method of a path, not only one route's."""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AllowedMethodsMiddleware:
    """A path served by several routes (GET /me and PATCH /me) is, to Starlette,
    several routes: its 405 lists the methods of the first one only, and OPTIONS is
    a 405 too. Here OPTIONS on a known path is answered 204 with every method in
    `Allow`, and a 405 gets the same complete `Allow`. CORS preflights never get here
    (the CORS middleware answers them first)."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes
        self._table: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def _paths(self) -> list[tuple[re.Pattern[str], frozenset[str]]]:
        # Built on first use: routes are added after the middleware is.
        if self._table is None:
            table = []
            for context in iter_route_contexts(self.routes):
                if context.methods and context.path:
                    regex, _, _ = compile_path(context.path)
                    table.append((regex, frozenset(context.methods)))
            self._table = table
        return self._table

    def allowed(self, scope: Scope) -> list[str]:
        path = scope["path"]
        methods = {m for regex, route in self._paths() if regex.match(path) for m in route}
        if methods:
            methods.add("OPTIONS")
        return sorted(methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            allowed = self.allowed(scope)
            if allowed:
                response = Response(status_code=204, headers={"Allow": ", ".join(allowed)})
                await response(scope, receive, send)
                return

        async def send_with_full_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = self.allowed(scope)
                if allowed:
                    MutableHeaders(scope=message)["allow"] = ", ".join(allowed)
            await send(message)

        await self.app(scope, receive, send_with_full_allow)
