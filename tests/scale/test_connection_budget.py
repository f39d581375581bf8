"""2,000 WebSocket handshakes against two gunicorn workers on a 20-connection
PostgreSQL budget: each is served (welcome) or closed with 1013 (try again later);
none fails otherwise, and the server logs no unhandled error."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.rooms.wsclient import Member, signup
from tests.scale.cluster import BASE_ENV, WAIT
from tests.support.brokers import random_prefix
from tests.support.gunicorn import run_gunicorn
from tests.support.server import ServerProcess
from townsquare.client import Connection
from townsquare.rooms.protocol import WelcomeFrame

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

HANDSHAKES = 2000
AT_ONCE = 100  # one socket per member at a time


@pytest.fixture(scope="module")
def gunicorn(
    shared_database_url: str, shared_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {
        **BASE_ENV,
        "DATABASE_URL": shared_database_url,
        "REDIS_URL": shared_redis_url,
        "BROKER_CHANNEL_PREFIX": random_prefix(),
        "DATABASE_MAX_CONNECTIONS": "20",
        # Short, so that bursts do run into it.
        "DATABASE_POOL_TIMEOUT_SECONDS": "0.05",
        "LOG_LEVEL": "INFO",  # run_gunicorn waits for each worker's start-up line
    }
    with run_gunicorn(env, tmp_path_factory.mktemp("budget") / "server.log") as server:
        yield server


async def _handshake(server: ServerProcess, member: Member) -> str:
    try:
        connection = await Connection.connect(
            server.base_url, token=member.token, open_timeout=WAIT
        )
        try:
            first = await connection.recv(WAIT)
            if isinstance(first, WelcomeFrame):
                return "served"
            await connection.recv(WAIT)  # the close
            return f"unexpected frame {first!r}"
        finally:
            await connection.close()
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        return "closed 1013" if code == 1013 else f"closed {code}"
    except Exception as exc:
        return f"failed: {exc!r}"


async def test_handshakes_over_the_budget_are_each_served_or_closed_with_1013(
    gunicorn: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=gunicorn.base_url, timeout=WAIT) as http:
        # One at a time: the HTTP side of a busy pool is not under test here.
        members = [await signup(http, f"Budget{i}") for i in range(AT_ONCE)]
    outcomes: Counter[str] = Counter()
    for _ in range(HANDSHAKES // AT_ONCE):
        outcomes.update(await asyncio.gather(*(_handshake(gunicorn, m) for m in members)))
    print("\nhandshake outcomes:", dict(outcomes))
    assert sum(outcomes.values()) == HANDSHAKES
    assert set(outcomes) <= {"served", "closed 1013"}, outcomes
    assert outcomes["served"] > 0
    log = gunicorn.log()
    assert "Exception in ASGI application" not in log
    assert "websocket handshake failed" not in log
    assert '"level": "ERROR"' not in log, [
        line for line in log.splitlines() if '"level": "ERROR"' in line
    ][:3]
