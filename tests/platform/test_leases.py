"""Reads keep their pool connections between statements, and give them back whenever
anything else needs one (platform/leases.py). On a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tests.support.databases import POSTGRES_URL, missing_service
from townsquare.platform.database import Database, create_database
from townsquare.platform.errors import DatabaseUnavailable
from townsquare.platform.leases import LeasedConnections

pytestmark = pytest.mark.postgres

PID = "SELECT pg_backend_pid()"
DSN = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://", 1)

Factory = Callable[..., Awaitable[tuple[Database, LeasedConnections]]]


@pytest.fixture
async def leased() -> AsyncIterator[Factory]:
    """`await leased(pool_size=, pool_timeout=, idle_seconds=)`: a database and its reads'
    leases, all closed after the test."""
    made: list[Database] = []

    async def make(
        *, pool_size: int = 2, pool_timeout: float = 5.0, idle_seconds: float = 3600.0
    ) -> tuple[Database, LeasedConnections]:
        database = create_database(POSTGRES_URL, pool_size=pool_size, pool_timeout=pool_timeout)
        made.append(database)
        leases = LeasedConnections(database.engine.sync_engine, idle_seconds=idle_seconds)
        try:
            await leases.run("fetchval", "SELECT 1", [])
        except (OSError, DatabaseUnavailable) as exc:
            missing_service("PostgreSQL", exc)
        return database, leases

    yield make
    for database in made:
        await database.dispose()


def _checked_out(database: Database) -> int:
    return int(database.engine.pool.checkedout())  # type: ignore[attr-defined]


async def _running(query: str) -> int:
    """The pid of the backend running `query` (unique to its test), once it runs (polled,
    10 s at most), seen from a connection outside the pool."""
    connection = await asyncpg.connect(DSN)
    try:
        for _ in range(1000):
            pid = await connection.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'active'", query
            )
            if pid is not None:
                return int(pid)
            await asyncio.sleep(0.01)
    finally:
        await connection.close()
    raise AssertionError(f"{query!r} never ran")


async def _slow_read(leases: LeasedConnections, seconds: int) -> tuple[asyncio.Future[Any], int]:
    """A read sleeping `seconds` on the server, once it runs, and its backend's pid."""
    query = f"SELECT pg_sleep({seconds}) /* {uuid.uuid4()} */"
    read = asyncio.ensure_future(leases.run("fetchval", query, []))
    return read, await _running(query)


async def _terminate(pid: int) -> None:
    """Ends backend `pid` from a connection of its own and waits until it is gone."""
    connection = await asyncpg.connect(DSN)
    try:
        await connection.execute("SELECT pg_terminate_backend($1)", pid)
        for _ in range(500):
            if not await connection.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"backend {pid} still alive")
    finally:
        await connection.close()


async def test_the_next_read_takes_the_connection_the_last_one_left_without_a_checkout(
    leased: Factory,
) -> None:
    database, leases = await leased()
    checkouts: list[Any] = []
    event.listen(database.engine.sync_engine.pool, "checkout", lambda *_: checkouts.append(1))
    first = await leases.run("fetchval", PID, [])
    second = await leases.run("fetchval", PID, [])
    assert first == second
    assert checkouts == []
    assert leases.borrowed == _checked_out(database) == 1


async def test_concurrent_reads_borrow_at_most_the_pool_and_queue_in_turn(
    leased: Factory,
) -> None:
    database, leases = await leased(pool_size=2)
    results = await asyncio.gather(
        *(leases.run("fetchval", "SELECT $1::int FROM pg_sleep(0.05)", [n]) for n in range(8))
    )
    assert results == list(range(8))
    assert leases.borrowed == _checked_out(database) == 2


async def test_a_read_waiting_past_the_pool_timeout_fails_as_a_checkout_would(
    leased: Factory,
) -> None:
    _database, leases = await leased(pool_size=1, pool_timeout=0.2)
    slow = asyncio.ensure_future(leases.run("fetchval", "SELECT pg_sleep(1)", []))
    await asyncio.sleep(0)  # the slow read holds the one connection
    with pytest.raises(PoolTimeout):
        await leases.run("fetchval", "SELECT 1", [])
    await slow
    assert await leases.run("fetchval", "SELECT 2", []) == 2


async def test_a_session_waiting_for_the_pool_gets_a_connection_reads_left_idle(
    leased: Factory,
) -> None:
    # Idle reads would keep their connections for an hour: only giving them back when
    # asked lets the session in before its 2 s timeout.
    database, leases = await leased(pool_size=2, pool_timeout=2.0, idle_seconds=3600)
    await asyncio.gather(*(leases.run("fetchval", "SELECT pg_sleep(0.05)", []) for _ in range(2)))
    assert leases.borrowed == _checked_out(database) == 2
    async with database.engine.connect() as connection:
        assert (await connection.execute(text("SELECT 7"))).scalar() == 7
    assert _checked_out(database) == leases.borrowed


async def test_a_busy_read_hands_its_connection_to_a_waiting_session_when_it_ends(
    leased: Factory,
) -> None:
    database, leases = await leased(pool_size=1, pool_timeout=5.0, idle_seconds=3600)
    query = "SELECT pg_sleep(0.3)"
    read = asyncio.ensure_future(leases.run("fetchval", query, []))
    # The session asks while the read runs; the read's connection is its only chance.
    await asyncio.sleep(0)
    async with database.engine.connect() as connection:
        assert read.done()
        assert leases.borrowed == 0
        assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    await read


async def test_idle_connections_go_back_to_the_pool_after_idle_seconds(leased: Factory) -> None:
    database, leases = await leased(pool_size=2, idle_seconds=0.05)
    await leases.run("fetchval", "SELECT 1", [])
    for _ in range(500):
        if _checked_out(database) == 0:
            break
        await asyncio.sleep(0.01)
    assert _checked_out(database) == leases.borrowed == 0


async def test_a_connection_killed_mid_statement_fails_that_read_and_is_never_reused(
    leased: Factory,
) -> None:
    database, leases = await leased(pool_size=1)
    read, pid = await _slow_read(leases, 30)
    await _terminate(pid)
    with pytest.raises(DatabaseUnavailable):
        await read
    assert await leases.run("fetchval", PID, []) != pid
    assert leases.borrowed == _checked_out(database) == 1


async def test_a_cancelled_read_closes_its_connection_and_the_next_read_gets_another(
    leased: Factory,
) -> None:
    database, leases = await leased(pool_size=1)
    read, pid = await _slow_read(leases, 2)
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    # Reusing it would fail ("another operation is in progress") or read late results.
    assert await leases.run("fetchval", PID, []) != pid
    assert leases.borrowed == _checked_out(database) == 1


async def test_a_connection_the_server_closed_while_idle_is_dropped_before_use(
    leased: Factory,
) -> None:
    _database, leases = await leased(pool_size=1)
    pid = await leases.run("fetchval", PID, [])
    await _terminate(pid)
    idle = leases._idle[0][0].driver_connection
    assert idle is not None
    for _ in range(500):  # until the client side has seen the server go
        if idle.is_closed():
            break
        await asyncio.sleep(0.01)
    assert idle.is_closed()
    assert await leases.run("fetchval", PID, []) != pid


async def test_a_statement_the_server_refuses_leaves_the_connection_in_use(
    leased: Factory,
) -> None:
    _database, leases = await leased(pool_size=1)
    pid = await leases.run("fetchval", PID, [])
    with pytest.raises(asyncpg.DivisionByZeroError):
        await leases.run("fetchval", "SELECT 1 / 0", [])
    assert await leases.run("fetchval", PID, []) == pid


async def test_close_gives_every_connection_back_and_later_reads_still_work(
    leased: Factory,
) -> None:
    database, leases = await leased(pool_size=2)
    await asyncio.gather(*(leases.run("fetchval", "SELECT pg_sleep(0.05)", []) for _ in range(2)))
    assert _checked_out(database) == 2
    await leases.close()
    assert _checked_out(database) == leases.borrowed == 0
    assert await leases.run("fetchval", "SELECT 3", []) == 3
    await leases.close()
    assert _checked_out(database) == 0
