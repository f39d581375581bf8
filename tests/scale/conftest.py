"""Fixtures for the multi-process tests: one fresh, migrated PostgreSQL database per
test module (every instance of a test shares it) and the shared Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support import databases
from tests.support.brokers import require_shared_redis


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
