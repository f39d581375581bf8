"""One WebSocket of the load generator, on picows: a callback per frame, no task or
future per message, so the client is not what limits the measurement.

A socket checks, as frames arrive: per sender, each message number exactly once and in
order (a skip is a gap, a repeat a duplicate); on townsquare, the room's `seq` without a
hole; and the latency from the sender's clock (CLOCK_MONOTONIC, shared by every process
of the machine) to now.
"""

from __future__ import annotations

import asyncio
import time
from array import array

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.loadgen.protocols import MARK, SEQ, Protocol, Step, body


class HandshakeFailed(Exception):
    pass


class Socket(WSListener):
    def __init__(self, protocol: Protocol, steps: list[Step], sender: int) -> None:
        self.protocol = protocol
        self.steps = list(steps)
        self.sender = sender
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.errors = 0
        self.first_error: bytes | None = None
        self.reset(0, record_latency=False)
        # Closed loop (hot room): send the next message when our own comes back.
        self.looping = False
        self.room = ""
        self.sent = 0
        self.rtts = array("q")
        self.on_own: asyncio.Event | None = None

    def reset(self, expected: int, *, record_latency: bool) -> None:
        self.expected = expected
        self.count = 0
        self.last: dict[int, int] = {}
        self.gaps = 0
        self.duplicates = 0
        self.last_seq = -1
        self.seq_errors = 0
        self.first_ns = 0
        self.last_ns = 0
        self.record_latency = record_latency
        self.latencies = array("q")
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if expected == 0:
            self.done.set_result(None)

    # -- picows callbacks ------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if not self.steps:
            self.ready.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(HandshakeFailed("closed during the handshake"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is not WSMsgType.TEXT:
            if kind is WSMsgType.CLOSE:
                self.first_error = self.first_error or f"close {frame.get_close_code()}".encode()
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        found = MARK.search(data)
        if found is None:
            self._control(transport, data)
            return
        now = time.monotonic_ns()
        sender, n = int(found[1]), int(found[2])
        previous = self.last.get(sender, 0)
        if n <= previous:
            self.duplicates += 1
            return
        if n != previous + 1:
            self.gaps += n - previous - 1
        self.last[sender] = n
        self.count += 1
        if self.protocol.has_seq:
            seq_found = SEQ.search(data)
            seq = int(seq_found[1]) if seq_found else -1
            if self.last_seq >= 0 and seq != self.last_seq + 1:
                self.seq_errors += 1
            self.last_seq = seq
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        sent_at = int(found[3])
        if self.record_latency:
            self.latencies.append(now - sent_at)
        if sender == self.sender:
            if n == self.sent:
                self.rtts.append(now - sent_at)
                if self.looping:
                    self.send_next()
            if self.on_own is not None:
                self.on_own.set()
        if self.count >= self.expected and not self.done.done():
            self.done.set_result(None)

    def _control(self, transport: WSTransport, data: bytes) -> None:
        answer = self.protocol.answer(data)
        if answer is not None:
            transport.send(WSMsgType.TEXT, answer)
            return
        if self.protocol.is_error(data):
            self.errors += 1
            self.first_error = self.first_error or data[:300]
            failure = HandshakeFailed(data[:300].decode(errors="replace"))
            for future in (self.ready, self.done):
                if not future.done():
                    future.set_exception(failure)
            return
        if self.steps and self.steps[0].expect in data:
            step = self.steps.pop(0)
            if step.reply is not None:
                transport.send(WSMsgType.TEXT, step.reply)
            if not self.steps and not self.ready.done():
                self.ready.set_result(None)

    # -- sending ---------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, self.protocol.send(self.room, text))

    def send_next(self) -> None:
        self.sent += 1
        self.send_text(body(self.sender, self.sent, time.monotonic_ns()))

    def send_raw(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, payload)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.disconnect()


async def connect(
    url: str,
    protocol: Protocol,
    *,
    token: str,
    room: str | None,
    sender: int = 0,
    within: float = 30.0,
    path: str | None = None,
) -> Socket:
    steps = protocol.handshake(room, token)
    _, socket = await ws_connect(
        lambda: Socket(protocol, steps, sender),
        url + (path or protocol.path(room or "")),
        extra_headers=protocol.headers(token),
        enable_auto_pong=True,
        websocket_handshake_timeout=within,
    )
    assert isinstance(socket, Socket)
    socket.room = room or ""
    async with asyncio.timeout(within):
        await socket.ready
    return socket
