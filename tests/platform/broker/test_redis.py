"""What only the Redis backend does: cross-process delivery, namespaces, bounded buffering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.brokers import eventually, random_prefix, require_shared_redis
from townsquare.platform.broker.base import BrokerUnavailable, Event
from townsquare.platform.broker.factory import create_backend
from townsquare.platform.broker.memory import MemoryBackend
from townsquare.platform.broker.redis import Backoff, RedisBackend

WAIT = 5.0


@pytest.fixture
async def redis_url() -> str:
    return await require_shared_redis()


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisBackend, RedisBackend]]:
    """Two backends on one prefix: two processes of one deployment."""
    prefix = random_prefix()
    first, second = RedisBackend(redis_url, prefix=prefix), RedisBackend(redis_url, prefix=prefix)
    await first.connect()
    await second.connect()
    try:
        yield first, second
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_publish_in_one_process_reaches_every_process(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    first, second = pair
    await first.subscribe("room:7")
    await second.subscribe("room:7")
    await first.publish("room:7", b"hi all")
    for backend in pair:
        assert await asyncio.wait_for(backend.next_event(), WAIT) == Event("room:7", b"hi all")


async def test_probe_answers_only_through_its_own_listener(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    first, second = pair
    assert await first.probe(WAIT)
    assert await second.probe(WAIT)
    await second.disconnect()
    assert await first.probe(WAIT)


async def test_backends_with_different_prefixes_do_not_hear_each_other(redis_url: str) -> None:
    ours = RedisBackend(redis_url, prefix=random_prefix())
    theirs = RedisBackend(redis_url, prefix=random_prefix())
    await ours.connect()
    await theirs.connect()
    try:
        await ours.subscribe("shared-name")
        await theirs.publish("shared-name", b"other deployment")
        await ours.publish("shared-name", b"ours")
        assert await asyncio.wait_for(ours.next_event(), WAIT) == Event("shared-name", b"ours")
    finally:
        await ours.disconnect()
        await theirs.disconnect()


async def test_slow_consumer_overflow_drops_the_oldest_and_counts_them(redis_url: str) -> None:
    backend = RedisBackend(redis_url, prefix=random_prefix(), queue_size=4)
    await backend.connect()
    try:
        await backend.subscribe("flood")
        for number in range(20):
            await backend.publish("flood", str(number).encode())
        assert await eventually(lambda: backend.dropped == 16, WAIT)
        kept = [int((await backend.next_event()).payload) for _ in range(4)]
        assert kept == [16, 17, 18, 19]
    finally:
        await backend.disconnect()


async def test_publish_before_connect_raises_broker_unavailable(redis_url: str) -> None:
    backend = RedisBackend(redis_url, prefix=random_prefix())
    with pytest.raises(BrokerUnavailable):
        await backend.publish("room", b"too early")


async def test_publish_to_unreachable_redis_raises_broker_unavailable_quickly() -> None:
    # Port 1 on loopback refuses: the backend must say so, not hang or crash.
    backend = RedisBackend("redis://127.0.0.1:1/0", prefix=random_prefix(), timeout=0.5)
    await asyncio.wait_for(backend.connect(), WAIT)
    try:
        assert not backend.is_healthy()
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(backend.publish("room", b"x"), WAIT)
        assert not await backend.probe(0.5)
    finally:
        await asyncio.wait_for(backend.disconnect(), WAIT)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (None, MemoryBackend),
        ("memory://", MemoryBackend),
        ("redis://127.0.0.1:6379/0", RedisBackend),
        ("rediss://user:secret@cache.example.com:6380/1", RedisBackend),
        ("unix:///run/redis.sock", RedisBackend),
    ],
)
def test_create_backend_picks_the_backend_by_url_scheme(url: str | None, kind: type) -> None:
    assert isinstance(create_backend(url), kind)


def test_create_backend_with_unknown_scheme_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported broker URL scheme 'amqp'"):
        create_backend("amqp://localhost")


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.1, maximum=2.0)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (3, 0.8), (5, 2.0), (500, 2.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered
