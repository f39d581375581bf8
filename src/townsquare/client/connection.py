"""One `/ws` connection: typed frames in and out, and nothing else (no reconnects,
no rooms); `Client` builds on it. Protocol tests use it directly, with raw text and
dict frames next to the typed ones.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from townsquare import __version__
from townsquare.client.errors import ClientError, ProtocolError
from townsquare.rooms.protocol import (
    SERVER_FRAME,
    AuthFrame,
    ByeFrame,
    ErrorFrame,
    ServerFrame,
    WelcomeFrame,
)

Frame = TypeVar("Frame", bound=BaseModel)
Outgoing = BaseModel | Mapping[str, Any] | str | bytes

USER_AGENT = f"townsquare-client/{__version__}"
# Server frames are small (a message is at most a few KiB); a larger one is an error.
MAX_FRAME_BYTES = 1024 * 1024


class Rejected(ClientError):
    """The server closed the connection before `welcome` (bad or missing token,
    shutting down, over a limit). `error` is the `error` frame it sent first, if any."""

    def __init__(self, code: int | None, reason: str, error: ErrorFrame | None) -> None:
        what = error.detail if error is not None else reason or "no reason given"
        super().__init__(f"connection refused ({code}): {what}")
        self.code = code
        self.reason = reason
        self.error = error


def ws_url(url: str) -> str:
    """The `/ws` address of a service given by its base URL (http[s]:// or ws[s]://)."""
    url = url.rstrip("/")
    if url.startswith("http://"):
        url = "ws://" + url.removeprefix("http://")
    elif url.startswith("https://"):
        url = "wss://" + url.removeprefix("https://")
    return url if url.endswith("/ws") else url + "/ws"


class Connection:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: WelcomeFrame | None = None
        self.last_received = time.monotonic()
        self.last_sent = time.monotonic()
        # The last `error` and `bye` before a close: they say why it closed.
        self.last_error: ErrorFrame | None = None
        self.bye: ByeFrame | None = None
        # Which access token the server holds for this connection, by the caller's
        # own count (`Credentials.version`); -1 when not tracked.
        self.token_version = -1

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        open_timeout: float = 10.0,
    ) -> Connection:
        """Open the socket (`url`: the service or its `/ws`). With `token` the handshake
        carries `Authorization: Bearer`. Does not wait for `welcome`."""
        extra = dict(headers or {})
        if token is not None:
            extra["Authorization"] = f"Bearer {token}"
        ws = await connect(
            ws_url(url),
            additional_headers=extra,
            user_agent_header=USER_AGENT,
            open_timeout=open_timeout,
            close_timeout=2,
            # The client keeps its own heartbeat (the protocol's `ping` frames): the
            # server counts only frames it reads, not WebSocket-level pings.
            ping_interval=None,
            compression=None,
            max_size=MAX_FRAME_BYTES,
        )
        return cls(ws)

    @classmethod
    async def open(
        cls, url: str, token: str, *, in_frame: bool = False, open_timeout: float = 10.0
    ) -> Connection:
        """Open and authenticate (on the handshake, or with a first `auth` frame when
        `in_frame`); returns once `welcome` arrived, raises `Rejected` otherwise."""
        connection = await cls.connect(
            url, token=None if in_frame else token, open_timeout=open_timeout
        )
        try:
            if in_frame:
                await connection.send(AuthFrame(type="auth", token=token))
            await connection.wait_welcome(open_timeout)
        except BaseException:
            connection.abort()
            raise
        return connection

    async def wait_welcome(self, within: float) -> WelcomeFrame:
        try:
            async with asyncio.timeout(within):
                while True:
                    frame = await self.recv()
                    if isinstance(frame, WelcomeFrame):
                        self.welcome = frame
                        return frame
        except ConnectionClosed:
            raise Rejected(self.close_code, self.close_reason, self.last_error) from None

    # -- frames ----------------------------------------------------------------------

    async def send(self, frame: Outgoing) -> None:
        """Send a frame: a protocol model, a dict (as JSON) or raw text/bytes."""
        if isinstance(frame, BaseModel):
            data: str | bytes = frame.model_dump_json(exclude_none=True)
        elif isinstance(frame, Mapping):
            data = json.dumps(frame, ensure_ascii=False)
        else:
            data = frame
        await self.ws.send(data)
        self.last_sent = time.monotonic()

    async def recv_text(self, within: float | None = None) -> str:
        """The next frame's raw text. Raises `ConnectionClosed` once closed."""
        async with asyncio.timeout(within):
            data = await self.ws.recv()
        self.last_received = time.monotonic()
        return data if isinstance(data, str) else data.decode()

    async def recv(self, within: float | None = None) -> ServerFrame:
        """The next frame, parsed. Raises `ProtocolError` for a frame this client does
        not know (the connection stays usable) and `ConnectionClosed` once closed."""
        text = await self.recv_text(within)
        try:
            frame = SERVER_FRAME.validate_json(text)
        except ValidationError as exc:
            raise ProtocolError(f"unreadable frame {text[:200]!r}") from exc
        if isinstance(frame, ErrorFrame):
            self.last_error = frame
        elif isinstance(frame, ByeFrame):
            self.bye = frame
        return frame

    async def recv_json(self, within: float | None = None) -> dict[str, Any]:
        frame = json.loads(await self.recv_text(within))
        if not isinstance(frame, dict):
            raise ProtocolError(f"frame is not an object: {frame!r}")
        return frame

    async def expect(self, kind: type[Frame], *, within: float = 10.0, **match: Any) -> Frame:
        """The next frame of type `kind` whose fields equal `match`, skipping others."""
        async with asyncio.timeout(within):
            while True:
                frame = await self.recv()
                if isinstance(frame, kind) and all(
                    getattr(frame, name) == value for name, value in match.items()
                ):
                    return frame

    async def frames(self) -> AsyncIterator[ServerFrame]:
        """Every frame until the connection closes (unknown ones skipped)."""
        while True:
            try:
                yield await self.recv()
            except ProtocolError:
                continue
            except ConnectionClosed:
                return

    # -- closing ---------------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str:
        return self.ws.close_reason or ""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake (for a peer
        that stopped answering: waiting for its close frame would wait forever)."""
        self.ws.transport.abort()
