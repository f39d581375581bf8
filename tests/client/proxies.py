"""Things between a client and a real server that a test controls.

`TcpProxy` forwards bytes and can black-hole the connections open at that moment
(nothing forwarded any more, nothing closed: no close frame, no FIN, as when a
route or a peer dies). `FrameProxy` speaks WebSocket on both sides: with `cap` it
plays a server with a replay cap (a `join` whose `since` is more than `cap` behind
is answered `recovered: false` and its replay is held back, as WS_REPLAY_MAX
does), it can stop passing frames on the connections open now, and inject frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    up_hole: bool = False  # client -> server swallowed
    down_hole: bool = False  # server -> client swallowed

    @property
    def holed(self) -> bool:
        return self.up_hole or self.down_hole


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[_Link] = []
        self.accepted = 0
        self.refusing = False  # new connections are closed at once
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        assert self._server is None, "started already"
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = _Link(client=writer, server=up_writer)
        self.links.append(link)
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, link, up=True)),
            asyncio.create_task(self._pump(up_reader, writer, link, up=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link, *, up: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if link.up_hole if up else link.down_hole:
                    continue  # swallowed
                sink.write(data)
                await sink.drain()
        if not link.holed:  # a live link passes the close on; a black hole never does
            sink.close()

    def black_hole(self, *, up: bool = True, down: bool = True) -> None:
        """Stop forwarding on every link open now (new ones are forwarded normally)."""
        for link in self.links:
            link.up_hole = link.up_hole or up
            link.down_hole = link.down_hole or down

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self.links:
            link.client.close()
            link.server.close()
        if self._server is not None:
            await self._server.wait_closed()


@dataclass
class _Joins:
    pending: dict[str, int | None] = field(default_factory=dict)  # room -> since
    held_back: dict[str, int] = field(default_factory=dict)  # room -> drop seq <= this
    up_silent: bool = False  # black-holed: client frames are dropped
    down_silent: bool = False  # black-holed: server frames are dropped


class FrameProxy:
    def __init__(self, target_ws: str, cap: int | None = None) -> None:
        self.target_ws = target_ws
        self.cap = cap
        self.joins: list[dict[str, Any]] = []  # every join a client sent
        self.sends: list[dict[str, Any]] = []  # every send a client sent
        self.unrecovered = 0  # joins answered recovered: false
        self.connections: list[ServerConnection] = []
        self._states: list[_Joins] = []
        self._server: Server | None = None
        self.refusing = False  # new handshakes are answered 503

    def _gate(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refusing:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "refusing\n")
        return None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def black_hole(self, *, up: bool = True, down: bool = True) -> None:
        """Stop passing frames (client to server: `up`; back: `down`) on the
        connections open now, without closing anything."""
        for state in self._states:
            state.up_silent = state.up_silent or up
            state.down_silent = state.down_silent or down

    async def start(self) -> str:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._gate)
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def inject(self, frame: dict[str, Any]) -> None:
        """Send a frame of our own to every client (as if the server had)."""
        for ws in list(self.connections):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps(frame))

    async def _handle(self, ws: ServerConnection) -> None:
        headers = {}
        if ws.request is not None and "Authorization" in ws.request.headers:
            headers["Authorization"] = ws.request.headers["Authorization"]
        state = _Joins()
        self.connections.append(ws)
        self._states.append(state)
        try:
            async with connect(f"{self.target_ws}/ws", additional_headers=headers) as upstream:
                up = asyncio.create_task(self._upward(ws, upstream, state))
                down = asyncio.create_task(self._downward(upstream, ws, state))
                await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
                if state.up_silent or state.down_silent:
                    return  # a black hole passes no close on
                for task in (up, down):
                    task.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
                await ws.close(upstream.close_code or 1000, upstream.close_reason or "")
        finally:
            self.connections.remove(ws)
            self._states.remove(state)

    async def _upward(self, ws: ServerConnection, upstream: Any, state: _Joins) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                if state.up_silent:
                    continue
                frame = json.loads(text)
                if frame.get("type") == "join":
                    self.joins.append(frame)
                    state.pending[frame["room"]] = frame.get("since")
                elif frame.get("type") == "send":
                    self.sends.append(frame)
                await upstream.send(text)

    async def _downward(self, upstream: Any, ws: ServerConnection, state: _Joins) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in upstream:
                if state.down_silent:
                    continue
                frame = json.loads(text)
                room = frame.get("room")
                if frame.get("type") == "joined" and room in state.pending:
                    since = state.pending.pop(room)
                    state.held_back.pop(room, None)
                    capped = self.cap is not None and since is not None
                    if capped and frame["seq"] - since > self.cap:
                        frame["recovered"] = False
                        state.held_back[room] = frame["seq"]
                        self.unrecovered += 1
                        text = json.dumps(frame)
                elif frame.get("type") == "message" and frame["seq"] <= state.held_back.get(
                    room, -1
                ):
                    continue  # the replay a capped server does not send
                await ws.send(text)
