"""Serve WebSocket endpoints ahead of the layers that have nothing to do for them.

Starlette's exception middleware and its route wrapper each wrap `send` in a
function of their own, which then runs once per frame sent, for nothing: a socket's
errors are its own close codes. This layer sits just inside the request id and hands
the WebSocket paths it is given straight to their endpoints, with the server's own
`send`; everything else goes on down the stack.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send


class WebSocketRoutesMiddleware:
    def __init__(self, app: ASGIApp, *, routes: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            endpoint = self.routes.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)
