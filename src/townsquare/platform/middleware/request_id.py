"""Give every request an id: the caller's `X-Request-ID` when well-formed, else a new one."""

from __future__ import annotations

import itertools
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townsquare.platform.context import set_user_id

HEADER = "x-request-id"
# Accept only ids a log line can carry safely: no spaces, quotes or control characters.
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def get_request_id() -> str | None:
    return _request_id.get()


# Generated ids: a random prefix per process and a counter. Unique across processes
# and restarts like a uuid4, without a call into the OS's random source per request;
# a request id only has to be unique, not secret.
_prefix = uuid.uuid4().hex[:16]
_counter = itertools.count(1)


def choose_request_id(incoming: str | None) -> str:
    if incoming is not None and _WELL_FORMED.match(incoming):
        return incoming
    return f"{_prefix}{next(_counter):016x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = choose_request_id(incoming)
        # Not reset afterwards on purpose: the server runs each request in its own task
        # (its own context), and the outermost error handler runs after this returns and
        # still needs the id.
        _request_id.set(request_id)
        # A connection may carry several requests in one task: start each one anonymous.
        set_user_id(None)
        scope.setdefault("state", {})["request_id"] = request_id

        if scope["type"] == "websocket":
            # Nothing to stamp on frames: the send is passed through untouched.
            await self.app(scope, receive, send)
            return

        header = (HEADER.encode(), request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # An error response may carry the id already (error_response sets it for
                # answers made outside this middleware).
                if not any(name == header[0] for name, _ in headers):
                    headers.append(header)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
