"""WebSockets and the database pool: a socket borrows a connection only for what it
does (the handshake's token check, a join), never while idle, and a handshake that
finds the pool busy past its timeout is closed with 1013 (try again later)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import make_settings
from tests.rooms.wsclient import connect, make_room, signup
from tests.support import databases
from tests.support.inprocess import serve_in_process
from tests.support.server import ServerProcess
from townsquare.main import create_app
from townsquare.platform.database import Database
from townsquare.rooms.protocol import AuthFrame, ByeFrame

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

POOL = 2


@pytest.fixture
async def served(postgresql_database_url: str) -> AsyncIterator[tuple[FastAPI, ServerProcess]]:
    settings = make_settings(
        database_url=postgresql_database_url,
        database_pool_size=POOL,
        database_max_overflow=0,
        database_pool_timeout_seconds=0.5,
    )
    app = create_app(settings)
    async with serve_in_process(app) as server:
        yield app, server
        database: Database = app.state.database
        await databases.empty_tables(database.engine)


async def test_idle_sockets_hold_no_pooled_connection(
    served: tuple[FastAPI, ServerProcess],
) -> None:
    app, server = served
    database: Database = app.state.database
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        members = [await signup(http, f"Idle{i}") for i in range(4 * POOL)]
        room = await make_room(http, members[0])
    async with AsyncExitStack() as stack:
        # Four times as many sockets as the pool has connections, each welcomed and
        # in a room: none of them keeps one.
        for member in members:
            client = await connect(server, member)
            stack.push_async_callback(client.close)
            await client.join(room)
            await client.ping()
        # Checked out, if anything, are only the connections reads keep between their
        # statements (platform/leases.py), which go back whenever anyone waits.
        assert database.leases is not None
        assert database.engine.pool.checkedout() == database.leases.borrowed  # type: ignore[attr-defined]


async def test_handshake_while_pool_stays_busy_is_closed_with_1013_then_served(
    served: tuple[FastAPI, ServerProcess],
) -> None:
    app, server = served
    database: Database = app.state.database
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        member = await signup(http, "Busy")
    async with AsyncExitStack() as stack:
        # Every connection of the pool held, as a saturated worker would hold them.
        for _ in range(POOL):
            connection = await stack.enter_async_context(database.engine.connect())
            await connection.execute(text("SELECT 1"))
        client = await connect(server)
        await client.send(AuthFrame(type="auth", token=member.token))
        code, frames = await client.closed()
    assert code == 1013
    assert frames == [ByeFrame(reason="server busy, retry shortly")]
    # The pool is free again: the same client retries and is served.
    again = await connect(server, member)
    await again.close()
