"""uvicorn's HTTP/1.1 protocol (httptools) with the two things it lacks against slow or
hostile clients: a deadline for the request head, and a graceful close.

- Head deadline. uvicorn times out idle keep-alive connections, but its timer stops
  at the first byte a client sends, and a connection that never sends anything has
  none at all: a client that sends half a request line (or nothing) holds its
  connection for as long as it likes. Here every request head (the request line and
  the headers) must be complete within `header_timeout` seconds of the connection's
  opening or of the request's first byte; otherwise the client gets 408 and the
  connection is closed. Bodies are timed by `BodyLimitMiddleware`, as the app reads them.

- Graceful close. uvicorn closes a connection with `transport.close()` even while the
  client is still sending (the rest of a body refused with 413, the rest of a
  WebSocket frame refused with 1009). The kernel then answers the unread bytes with a
  reset, and a client that is still writing often never reads the response (or the
  close frame) that says why: it sees a reset, a WebSocket client reports 1006. Here a
  close first half-closes (FIN after everything written) and then reads and discards
  what the client still sends, until it closes its side or `linger` seconds pass, as
  nginx's lingering close and RFC 6455 (7.1.1) do.

- Fewer writes. What uvicorn writes to a connection within one turn of the event loop
  (a response's head and body; a WebSocket's handshake answer and its first frame; the
  frames a connection's writer sends in one go) leaves in one `write` instead of one
  system call each: on loopback and under load each write is a trip through the
  kernel's TCP stack, the largest single cost of a connect storm and of a small
  response. An HTTP response leaves as soon as it is complete; anything else at the end
  of the loop's turn.

This subclasses uvicorn internals (the httptools protocol's parser callbacks and its
`transport` attribute), so pyproject.toml pins uvicorn below its next minor release and
tests/platform/test_http_protocol.py checks both behaviours on a real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Bytes read and thrown away while lingering before the connection is cut anyway.
MAX_LINGER_BYTES = 16 * 1024 * 1024

_TIMEOUT_BODY = json.dumps(
    {"detail": "Request head not received in time", "request_id": None}
).encode()
REQUEST_TIMEOUT = b"".join(
    [
        b"HTTP/1.1 408 Request Timeout\r\n",
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(_TIMEOUT_BODY),
        b"connection: close\r\n\r\n",
        _TIMEOUT_BODY,
    ]
)


class _Discard(asyncio.Protocol):
    """Owns a half-closed connection: reads and drops input until the client closes its
    side, `linger` seconds pass or too much arrives."""

    def __init__(self, transport: asyncio.Transport, linger: float) -> None:
        self.transport = transport
        self.received = 0
        self.timer = asyncio.get_running_loop().call_later(linger, transport.close)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > MAX_LINGER_BYTES:
            self.transport.close()

    def eof_received(self) -> bool:
        return False  # the client is done too: close

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()


class LingeringTransport:
    """The transport uvicorn's protocols are handed: itself for everything but writing,
    which is gathered, and `close`, which half-closes and lingers (see the module's
    docstring).

    Gathered writes: uvicorn writes a response's head and its body separately, and the
    event loop sends each write at once, so a small response cost two `send` system
    calls, a large share of a cached read's whole cost. Writes are kept here and sent
    together when the protocol says the response is complete (`flush`), or at the end
    of the event loop's current pass, whichever comes first: WebSocket frames written in
    one pass (a burst of room messages) also leave in one call. Order is kept, and
    nothing is delayed past the pass it was written in.
    """

    def __init__(self, transport: asyncio.Transport, protocol: asyncio.Protocol, linger: float):
        self._transport = transport
        self._protocol = protocol
        self._linger = linger
        self._closing = False
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        # The hot pass-throughs, bound once instead of found by __getattr__ each call.
        self.get_extra_info = transport.get_extra_info
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading
        self.is_reading = transport.is_reading

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        # A WebSocket upgrade hands the connection to another protocol object.
        self._protocol = cast(asyncio.Protocol, protocol)
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        pending = self._pending
        if not pending:
            self._loop.call_soon(self.flush)
        # A caller may reuse its buffer once write returns: keep a copy of anything
        # but immutable bytes.
        pending.append(data if isinstance(data, bytes) else bytes(data))

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what was written so far, in one call."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        if self._closing:
            return
        self.flush()
        self._closing = True
        transport = self._transport
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()  # FIN once everything written is sent
        transport.set_protocol(_Discard(transport, self._linger))
        transport.resume_reading()
        # As far as uvicorn knows the connection is closed now; it forgets it as it
        # would after a plain close.
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)


class HttpProtocol(HttpToolsProtocol):
    """httptools' protocol with a request-head deadline and a graceful close.

    `configured(header_timeout, linger)` makes the class uvicorn is given (`http=`).
    """

    header_timeout: ClassVar[float] = 10.0
    linger: ClassVar[float] = 5.0

    @classmethod
    def configured(cls, *, header_timeout: float, linger: float) -> type[HttpProtocol]:
        return type("HttpProtocol", (cls,), {"header_timeout": header_timeout, "linger": linger})

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._head_timer: asyncio.TimerHandle | None = None
        wrapped = LingeringTransport(cast(asyncio.Transport, transport), self, self.linger)
        super().connection_made(cast(asyncio.Transport, wrapped))
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Between requests, any byte starts the clock of the next head (uvicorn's
        # keep-alive timer has just stopped for it). While a request is served, the
        # body is the app's to time.
        if self.cycle is None or self.cycle.response_complete:
            self._start_head_clock()
        super().data_received(data)

    def on_response_complete(self) -> None:
        # The response is all written: send it now, in one call, rather than at the end
        # of the loop's pass.
        cast(LingeringTransport, self.transport).flush()
        super().on_response_complete()

    def on_headers_complete(self) -> None:
        self._stop_head_clock()
        super().on_headers_complete()

    def _start_head_clock(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
