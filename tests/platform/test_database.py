"""The connection pool under load: fixed size (no connection churn), and a request that
cannot get a connection in time answered 503 with Retry-After, never 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import make_settings
from tests.support import databases
from townsquare.main import create_app
from townsquare.platform.database import Database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def small_pool_app(postgresql_database_url: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url=postgresql_database_url,
        database_pool_size=2,
        database_pool_timeout_seconds=0.3,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        await databases.empty_tables(application.state.database.engine)


async def _signed_in(client: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    body = {"name": "Pool", "email": "pool@example.com", "password": "long enough pw"}
    created = await client.post("/users", json=body)
    assert created.status_code == 201, created.text
    form = {"username": body["email"], "password": body["password"]}
    token = (await client.post("/auth/token", data=form)).json()["access_token"]
    return created.json()["id"], {"Authorization": f"Bearer {token}"}


async def test_request_waiting_past_pool_timeout_returns_503_with_retry_after(
    small_pool_app: FastAPI,
) -> None:
    transport = httpx.ASGITransport(app=small_pool_app)
    database: Database = small_pool_app.state.database
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        user_id, headers = await _signed_in(client)
        assert (await client.get(f"/users/{user_id}", headers=headers)).status_code == 200
        # Every connection of the pool busy (a slow query, a stuck transaction).
        async with database.engine.connect() as one, database.engine.connect() as two:
            await one.execute(text("SELECT 1"))
            await two.execute(text("SELECT 1"))
            response = await client.get(f"/users/{user_id}", headers=headers)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        body = response.json()
        assert body == {
            "detail": "The service is busy, retry shortly",
            "request_id": response.headers["x-request-id"],
        }
        # The pool recovers as soon as a connection is free.
        assert (await client.get(f"/users/{user_id}", headers=headers)).status_code == 200


async def test_concurrent_reads_reuse_the_pools_connections(small_pool_app: FastAPI) -> None:
    database: Database = small_pool_app.state.database
    opened: list[Any] = []
    transport = httpx.ASGITransport(app=small_pool_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        user_id, headers = await _signed_in(client)

        def on_connect(*_args: Any) -> None:
            opened.append(True)

        event.listen(database.engine.sync_engine, "connect", on_connect)
        try:
            responses = await asyncio.gather(
                *(client.get(f"/users/{user_id}", headers=headers) for _ in range(40))
            )
        finally:
            event.remove(database.engine.sync_engine, "connect", on_connect)
    assert {r.status_code for r in responses} == {200}
    # Forty requests at once over a pool of two: at most two PostgreSQL sessions ever
    # opened (none if the earlier requests left them open), none opened and closed per burst.
    assert len(opened) <= 2
    # The sign-up's verification mail is a job of this process; it may still hold a
    # connection (it queued behind the forty requests).
    await small_pool_app.state.jobs.idle()
    # What stays checked out is only what the reads keep borrowed between statements
    # (platform/leases.py), and that goes back to the pool when asked.
    assert database.leases is not None
    assert database.engine.pool.checkedout() == database.leases.borrowed  # type: ignore[attr-defined]
    await database.leases.close()
    assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_connection_killed_under_the_pool_costs_at_most_one_503_then_recovers(
    postgresql_database_url: str,
) -> None:
    settings = make_settings(database_url=postgresql_database_url, database_pool_size=1)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        database: Database = application.state.database
        transport = httpx.ASGITransport(app=application)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                user_id, headers = await _signed_in(client)
                assert (await client.get(f"/users/{user_id}", headers=headers)).status_code == 200
                # The pool's one connection dies (a restart, a failover, an admin).
                async with database.engine.connect() as connection:
                    pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar()
                    await connection.rollback()
                killer = create_async_engine(postgresql_database_url)
                try:
                    async with killer.connect() as connection:
                        await connection.execute(
                            text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
                        )
                        # pg_terminate_backend only signals: wait until the backend is gone.
                        gone = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
                        for _ in range(500):
                            if (await connection.execute(gone, {"pid": pid})).scalar() == 0:
                                break
                            await asyncio.sleep(0.01)
                        else:
                            pytest.fail(f"backend {pid} still alive")
                finally:
                    await killer.dispose()
                # A connection the client already knows is closed is dropped before use
                # (platform/leases.py); one whose end it has not seen yet fails its one
                # request with 503 and is dropped.
                first = await client.get(f"/users/{user_id}", headers=headers)
                assert first.status_code in (200, 503)
                if first.status_code == 503:
                    assert first.headers["retry-after"] == "1"
                assert (await client.get(f"/users/{user_id}", headers=headers)).status_code == 200
        finally:
            await databases.empty_tables(database.engine)
