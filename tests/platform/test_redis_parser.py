"""redis-py parses replies with hiredis (C) when it is installed: it is a dependency."""

from __future__ import annotations

from redis._parsers import _AsyncHiredisParser
from redis.asyncio import Redis

from tests.support.brokers import require_shared_redis


async def test_redis_clients_parse_replies_with_hiredis() -> None:
    client = Redis.from_url(await require_shared_redis())
    try:
        assert await client.ping()
        connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            assert isinstance(connection._parser, _AsyncHiredisParser)
        finally:
            await client.connection_pool.release(connection)
    finally:
        await client.aclose()
