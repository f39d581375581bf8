"""One client must not take a worker's HTTP side down (issue 14).

Against one real worker, at the same time: 1,500 sockets of ONE user, 1,500 sockets
that never authenticate, and 1,500 TCP connections that never finish their request
line. Meanwhile `/live` and `/ready` answer 200 and a second user signs in and chats;
every extra socket is refused with a clear status or close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import TEST_SECRET
from tests.rooms.wsclient import connect, make_room, signup
from tests.support.server import ServerProcess, run_server
from townsquare.client import Api, Connection, Rejected

pytestmark = pytest.mark.e2e

EACH = 1500
PER_USER = 10
PENDING_PER_IP = 50
# Long enough to hold everything open while the checks run, short enough for a test.
HEADER_TIMEOUT = 15
AUTH_TIMEOUT = 15
# Client sockets here, server sockets in the worker, and room to spare.
FILES_NEEDED = 4 * 3 * EACH + 1000
T = TypeVar("T")


def _raise_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
        pytest.skip(f"needs {FILES_NEEDED} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < FILES_NEEDED:
        # Inherited by the server process started after this.
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    _raise_open_file_limit()
    folder: Path = tmp_path_factory.mktemp("flood")
    env = {
        "ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'db.sqlite'}",
        "LOG_LEVEL": "WARNING",
        "HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "WS_AUTH_TIMEOUT_SECONDS": str(AUTH_TIMEOUT),
        "WS_MAX_CONNECTIONS_PER_USER": str(PER_USER),
        "WS_MAX_PENDING_PER_IP": str(PENDING_PER_IP),
    }
    with run_server(env, folder / "server.log") as process:
        yield process


async def _bounded(count: int, make: Callable[[], Awaitable[T]], at_once: int = 100) -> list[T]:
    gate = asyncio.Semaphore(at_once)

    async def one() -> T:
        async with gate:
            return await make()

    return await asyncio.gather(*(one() for _ in range(count)))


async def _outcome(connection: Connection, wait: float) -> str:
    """`welcome` when the socket was let in, else `close <code>`."""
    try:
        await connection.wait_welcome(wait)
    except Rejected as refused:
        return f"close {refused.code}"
    except TimeoutError:
        return "close None"
    return "welcome"


def _rss_mib(server: ServerProcess) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def test_one_client_cannot_take_the_http_side_down(server: ServerProcess) -> None:
    port = int(server.base_url.rsplit(":", 1)[1])
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        flooder = await signup(http, "Flooder")
        rss_before = _rss_mib(server)
        started = time.monotonic()

        # 1. TCP connections that send half a request line and nothing more.
        async def silent() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /li")
            return reader, writer

        silent_connections = await _bounded(EACH, silent)

        # 2. WebSockets that never authenticate (no header, no `auth` frame).
        async def anonymous() -> Connection | int:
            try:
                return await Connection.connect(server.base_url, open_timeout=30)
            except InvalidStatus as refused:
                return refused.response.status_code

        anonymous_sockets = await _bounded(EACH, anonymous)

        # 3. WebSockets of the one user, all authenticated.
        async def own() -> Connection:
            return await Connection.connect(server.base_url, token=flooder.token, open_timeout=30)

        own_sockets = await _bounded(EACH, own)
        opened_in = time.monotonic() - started

        # Everything above is open (or was just refused). The HTTP side still serves.
        assert (await http.get("/live")).status_code == 200
        ready = await http.get("/ready")
        assert ready.status_code == 200, ready.text
        other = await signup(http, "Other")
        room = await make_room(http, other)
        chatter = await connect(server, other)
        await chatter.join(room)
        await chatter.say(room, "still chatting")
        [echo] = await chatter.messages(room, 1)
        assert echo.body == "still chatting"
        async with Api(server.base_url, token=other.token) as api:
            await api.post_message(room, "over REST too")
        await chatter.close()
        rss_held = _rss_mib(server)

        # One user: PER_USER sockets let in, every other one closed with 1008 after `bye`.
        own_outcomes = Counter(await asyncio.gather(*(_outcome(ws, 10) for ws in own_sockets)))
        assert own_outcomes == {"welcome": PER_USER, "close 1008": EACH - PER_USER}

        # Unauthenticated: PENDING_PER_IP accepted (then closed 1008 at the auth
        # timeout), the rest refused at the handshake with 429.
        accepted = [ws for ws in anonymous_sockets if not isinstance(ws, int)]
        refused = Counter(ws for ws in anonymous_sockets if isinstance(ws, int))
        assert len(accepted) == PENDING_PER_IP
        assert refused == {429: EACH - PENDING_PER_IP}
        anonymous_outcomes = Counter(
            await asyncio.gather(*(_outcome(ws, AUTH_TIMEOUT + 10) for ws in accepted))
        )
        assert anonymous_outcomes == {"close 1008": PENDING_PER_IP}

        # Unfinished requests: each answered 408 at the header timeout, then closed.
        async def answer(reader: asyncio.StreamReader) -> bytes:
            with contextlib.suppress(ConnectionError):
                async with asyncio.timeout(HEADER_TIMEOUT + 10):
                    return (await reader.read())[:12]
            return b"reset"

        answers = Counter(await asyncio.gather(*(answer(r) for r, _ in silent_connections)))
        assert answers == {b"HTTP/1.1 408": EACH}

        for ws in own_sockets:
            await ws.close()
        for _, writer in silent_connections:
            writer.close()
        assert (await http.get("/live")).status_code == 200
        # Figures for docs/security.md (pytest -s prints them).
        print(
            f"\nflood: {3 * EACH} connections opened in {opened_in:.1f}s; "
            f"server RSS {rss_before:.0f} MiB before, {rss_held:.0f} MiB while held"
        )
