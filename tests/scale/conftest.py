"""Fixtures for the multi-process tests: one fresh, migrated PostgreSQL database per
test module (every instance of a test shares it), the shared Redis, and two
`townsquare serve` instances on both (a module changes their settings by overriding
`instances_env`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.scale.cluster import WAIT, run_instances
from tests.support import databases
from tests.support.brokers import random_prefix, require_shared_redis
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
async def shared_database_url() -> AsyncIterator[str]:
    url = await databases.create_postgres_database()
    try:
        await databases.migrate(url)
        yield url
    finally:
        await databases.drop_postgres_database(url)


@pytest.fixture(scope="module")
async def shared_redis_url() -> str:
    return await require_shared_redis()


@pytest.fixture(scope="module")
def instances_env(shared_database_url: str, shared_redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": shared_database_url,
        "REDIS_URL": shared_redis_url,
        "BROKER_CHANNEL_PREFIX": random_prefix(),
    }


@pytest.fixture(scope="module")
def instances(
    instances_env: dict[str, str],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[ServerProcess]]:
    """Two instances sharing PostgreSQL and Redis, for the whole module."""
    directory = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with run_instances(instances_env, directory) as servers:
        yield servers


@pytest.fixture
async def https(instances: list[ServerProcess]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """An HTTP client for each instance."""
    a, b = instances[:2]
    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=WAIT) as http_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=WAIT) as http_b,
    ):
        yield [http_a, http_b]
