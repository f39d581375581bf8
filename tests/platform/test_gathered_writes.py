"""The HTTP protocol sends a response's head and body in one write (platform/http_protocol.py).

uvicorn's protocol runs for real here, on a transport that records what it is asked to
send, so each test sees the exact writes the socket would get.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from townsquare.platform.http_protocol import HttpProtocol

REQUEST = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.eof = False
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.eof, "written after EOF"
        self.writes.append(bytes(data))

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _serve(app: Any, request: bytes = REQUEST) -> tuple[RecordingTransport, asyncio.Event]:
    done = asyncio.Event()

    async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            done.set()

    config = uvicorn.Config(tracked, log_config=None, lifespan="off")
    protocol_class = HttpProtocol.configured(header_timeout=10, linger=0.1)
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    await done.wait()
    return transport, done


async def test_a_small_response_leaves_in_one_write() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})

    transport, _ = await _serve(app)
    # Sent when the response completed, not a loop pass later.
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b'{"ok":true}'


async def test_a_streamed_body_keeps_its_order_and_leaves_by_the_end_of_the_pass() -> None:
    chunks_sent = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two,", "more_body": True})
        chunks_sent.set()
        await release.wait()
        await send({"type": "http.response.body", "body": b"three"})

    serving = asyncio.ensure_future(_serve(app))
    await chunks_sent.wait()
    # The chunks written so far are sent together once the loop's current pass ends,
    # while the response is still open.
    await asyncio.sleep(0)
    release.set()
    transport, _ = await serving
    sent = b"".join(transport.writes)
    body = sent.partition(b"\r\n\r\n")[2]
    assert body == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
    assert len(transport.writes) == 2  # head + two chunks in the first pass, the rest at the end


async def test_close_sends_what_was_written_before_the_fin() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"2"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    transport, _ = await _serve(app)
    assert transport.eof  # half-closed, lingering
    assert b"".join(transport.writes).endswith(b"\r\n\r\nok")
