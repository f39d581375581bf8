"""Real servers for the end-to-end tests: one per module and database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.support import databases
from tests.support.server import ServerProcess, run_server
from townsquare.platform.database import create_database

BASE_ENV = {
    "ENV": "test",
    "SECRET_KEY": TEST_SECRET,
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "64",
    "LOG_LEVEL": "WARNING",
    "ALLOWED_ORIGINS": "http://allowed.example",
}


async def _empty(url: str) -> None:
    database = create_database(url)
    try:
        await databases.empty_tables(database.engine)
    finally:
        await database.dispose()


def _serve(
    request: pytest.FixtureRequest, tmp: Path, env: dict[str, str]
) -> Iterator[ServerProcess]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'e2e.db'}"
    else:
        url = str(request.getfixturevalue("postgresql_database_url"))
    with run_server({**BASE_ENV, **env, "DATABASE_URL": url}, tmp / "server.log") as server:
        yield server
    if request.param != "sqlite":
        # The per-run PostgreSQL database is shared with the in-process tests.
        asyncio.run(_empty(url))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with roomy limits (the protocol tests)."""
    env = {"WS_MESSAGES_PER_SECOND": "2000", "WS_SEND_QUEUE_SIZE": "64"}
    yield from _serve(request, tmp_path_factory.mktemp("e2e"), env)


@pytest.fixture(scope="module", params=["sqlite"])
def strict_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with tight limits: short timeouts, a low message rate."""
    env = {
        "WS_MESSAGES_PER_SECOND": "20",
        "WS_AUTH_TIMEOUT_SECONDS": "1",
        "WS_HEARTBEAT_TIMEOUT_SECONDS": "2",
        "WS_HEARTBEAT_INTERVAL_SECONDS": "1",
    }
    yield from _serve(request, tmp_path_factory.mktemp("strict"), env)


@pytest.fixture(scope="module", params=["sqlite"])
def budget_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with a low message rate and the default (long) heartbeat timeout."""
    env = {"WS_MESSAGES_PER_SECOND": "20"}
    yield from _serve(request, tmp_path_factory.mktemp("budget"), env)


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module", params=["sqlite"])
def tight_queue_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server whose sockets each queue at most 8 frames (the least allowed)."""
    env = {"WS_MESSAGES_PER_SECOND": "2000", "WS_SEND_QUEUE_SIZE": "8"}
    yield from _serve(request, tmp_path_factory.mktemp("tight"), env)
