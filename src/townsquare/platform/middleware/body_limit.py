"""Refuse request bodies over a size with 413 before reading them, and bodies that take
too long to arrive with 408."""

from __future__ import annotations

import asyncio

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townsquare.platform.errors import error_response


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request body larger than {max_bytes} bytes")


class BodyTooSlow(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"Request body not received within {seconds:g} seconds")


class BodyLimitMiddleware:
    """A declared `Content-Length` over `max_bytes` is answered at once, before the app
    runs; a chunked body is counted as the app reads it and refused the moment it
    passes the limit. Either way the connection is closed after the answer, so the
    rest of the body is never parsed as a next request.

    Once the app starts reading, the whole body must arrive within `timeout` seconds.

    The errors raised while the app reads are `HTTPException`s, so FastAPI passes them
    through its body parsing and the app's one error handler renders the envelope.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is not None and declared > self.max_bytes:
            too_large = BodyTooLarge(self.max_bytes)
            response = error_response(413, too_large.detail, {"Connection": "close"})
            await response(scope, receive, send)
            return
        if not chunked and not declared:
            # No body (no Content-Length, or 0, and not chunked): nothing to limit or time.
            await self.app(scope, receive, send)
            return

        refused = False
        received = 0
        complete = False
        deadline: float | None = None

        async def limited_receive() -> Message:
            nonlocal refused, received, complete, deadline
            if complete:
                return await receive()  # after the body: only the disconnect is left
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused = True
                raise BodyTooSlow(self.timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise BodyTooLarge(self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        async def send_closing_when_refused(message: Message) -> None:
            if refused and message["type"] == "http.response.start":
                MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        await self.app(scope, limited_receive, send_closing_when_refused)


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None when absent or unreadable) and whether the body
    is chunked."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None  # the HTTP parser refuses these before the app runs
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked
