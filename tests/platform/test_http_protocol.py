"""Against a real server: slow and silent clients, oversized bodies, graceful closes.

These pin the uvicorn internals platform/http_protocol.py builds on: a new uvicorn that
changed them fails here first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import TEST_SECRET
from tests.rooms.wsclient import signup
from tests.support.server import ServerProcess, run_server

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_BODY = 64 * 1024
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("http-protocol")
    env = {
        "ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'db.sqlite'}",
        "LOG_LEVEL": "INFO",
        "HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "MAX_BODY_BYTES": str(MAX_BODY),
    }
    with run_server(env, folder / "server.log") as process:
        yield process


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


async def _open(server: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(server.base_url.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


async def _response(reader: asyncio.StreamReader, wait: float = 10) -> tuple[int, bytes]:
    """The status and body of the response on `reader`, read until the server closes."""
    data = await asyncio.wait_for(reader.read(), wait)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def _messages(server: ServerProcess) -> list[str]:
    return [json.loads(line)["message"] for line in server.log().splitlines() if line]


def _rss_bytes(server: ServerProcess) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /health HT", b"GET /health HTTP/1.1\r\nHost: x\r\n"],
    ids=["nothing", "half-a-request-line", "headers-never-finished"],
)
async def test_request_head_not_finished_in_time_gets_408_and_is_closed(
    server: ServerProcess, sent: bytes
) -> None:
    reader, writer = await _open(server)
    writer.write(sent)
    started = time.monotonic()
    status, body = await _response(reader, wait=HEADER_TIMEOUT + 5)
    assert status == 408
    assert json.loads(body)["detail"] == "Request head not received in time"
    assert HEADER_TIMEOUT - 0.2 <= time.monotonic() - started < HEADER_TIMEOUT + 3
    await _close(writer)


async def test_trickled_head_is_cut_at_the_deadline_not_reset_by_each_byte(
    server: ServerProcess,
) -> None:
    reader, writer = await _open(server)

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 1000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

    started = time.monotonic()
    trickling = asyncio.create_task(trickle())
    try:
        status, _ = await _response(reader)
        assert status == 408
        assert time.monotonic() - started < HEADER_TIMEOUT + 2
    finally:
        trickling.cancel()
        await _close(writer)


async def test_keep_alive_connection_then_unfinished_request_is_closed(
    server: ServerProcess,
) -> None:
    reader, writer = await _open(server)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HT")
    status, _ = await _response(reader, wait=HEADER_TIMEOUT + 5)
    assert status == 200  # the first answer; the connection then ends with a 408
    await _close(writer)


async def test_declared_100_mb_body_gets_413_and_server_memory_stays_flat(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    async def send_100_mb() -> int:
        # As an HTTP client does: read the early answer while still sending.
        reader, writer = await _open(server)
        writer.write(
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (100 * MIB)
        )
        answer = asyncio.create_task(reader.readuntil(b"}"))
        chunk = b"x" * MIB
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                if answer.done():
                    break
                writer.write(chunk)
                await writer.drain()
                # drain() returns at once while the kernel takes the data, so without
                # a turn of the loop the answer would not be read before the server,
                # having discarded 16 MiB after answering, cuts the connection.
                await asyncio.sleep(0)
        head, _, body = (await answer).partition(b"\r\n\r\n")
        assert json.loads(body)["detail"] == f"Request body larger than {MAX_BODY} bytes"
        await _close(writer)
        return int(head.split(b" ", 2)[1])

    await http.get("/health")
    before = _rss_bytes(server)
    statuses = await asyncio.gather(*(send_100_mb() for _ in range(4)))
    grown = _rss_bytes(server) - before
    assert statuses == [413] * 4
    assert grown < 10 * MIB, f"server memory grew by {grown / MIB:.1f} MiB"
    print(f"\n4 x 100 MiB bodies: 413 each, server RSS grew by {grown / MIB:.1f} MiB")
    assert (await http.get("/health")).status_code == 200


async def test_chunked_body_over_the_limit_gets_413_once_it_passes_it(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "A", "email": "a@example.com", "password": "'
        for _ in range(100):
            yield b"p" * 64 * 1024

    before = _rss_bytes(server)
    response = await http.post("/users", content=chunks())
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert _rss_bytes(server) - before < 10 * MIB


async def test_body_arriving_too_slowly_gets_408(server: ServerProcess) -> None:
    reader, writer = await _open(server)
    writer.write(
        b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    status, body = await _response(reader, wait=BODY_TIMEOUT + 5)
    assert status == 408
    assert "not received within" in json.loads(body)["detail"]
    await _close(writer)


async def test_body_at_the_limit_is_read(http: httpx.AsyncClient) -> None:
    padding = "x" * (MAX_BODY - 100)
    at_limit = await http.post(
        "/users",
        content=json.dumps({"name": "P", "email": "p@example.com", "pad": padding}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert at_limit.status_code == 422  # read and validated: the unknown field is named
    assert ["body", "pad"] in [error["loc"] for error in at_limit.json()["detail"]]


async def test_websocket_handshake_log_line_has_no_query_string(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    member = await signup(http)
    # Raw socket: a query string on /ws, which townsquare.client never sends.
    async with connect(
        f"{server.ws_url}/ws?token={member.token}", additional_headers=member.headers
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
    accepted = '"WebSocket /ws" [accepted]'
    deadline = time.monotonic() + 5
    while not any(accepted in message for message in _messages(server)):
        assert time.monotonic() < deadline, "no handshake line logged"
        await asyncio.sleep(0.05)
    assert member.token not in server.log()
    assert "token=" not in server.log()
