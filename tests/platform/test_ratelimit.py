"""The rate limiter itself, on a real Redis: its accuracy bound across workers, its
round trips, and what it does when Redis is down or its pool is busy."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support.brokers import RedisServer, random_prefix, require_shared_redis
from townsquare.platform.ratelimit import RateLimiter


@pytest.fixture
async def redis_url() -> str:
    return await require_shared_redis()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        await server.start()
    except (FileNotFoundError, RuntimeError) as exc:
        from tests.support.databases import missing_service

        missing_service("redis-server", exc)
    try:
        yield server
    finally:
        await server.stop()


async def admitted(limiter: RateLimiter, limit: str, count: int, *key: str) -> int:
    item = RateLimiter.parse(limit)
    return sum([(await limiter.hit(item, *key)).allowed for _ in range(count)])


async def test_workers_sharing_redis_never_admit_more_than_the_limit(redis_url: str) -> None:
    # Three "workers" (limiters with their own leases) take turns at random on one key.
    prefix = random_prefix()
    workers = [RateLimiter(redis_url=redis_url, key_prefix=prefix) for _ in range(3)]
    rng = random.Random(12)
    item = RateLimiter.parse("200/hour")
    try:
        allowed = 0
        for _ in range(600):
            allowed += (await rng.choice(workers).hit(item, "user", "1")).allowed
    finally:
        for worker in workers:
            await worker.close()
    lease = int(200 * 0.1)
    # Never over the limit; under it by at most what the other two workers hold unused.
    assert 200 - 2 * lease <= allowed <= 200


async def test_concurrent_hits_in_one_worker_share_redis_calls(redis_url: str) -> None:
    limiter = RateLimiter(redis_url=redis_url, key_prefix=random_prefix())
    item = RateLimiter.parse("100/minute")
    try:
        decisions = await asyncio.gather(*(limiter.hit(item, "ip", "a") for _ in range(500)))
        trips = limiter.round_trips
    finally:
        await limiter.close()
    assert sum(d.allowed for d in decisions) == 100
    assert all(1 <= d.retry_after <= 60 for d in decisions if not d.allowed)
    # Leases of 1, 2, 4, ... 10 tokens, one call each for all 500 waiters: not one a request.
    assert trips <= 20


async def test_common_path_makes_no_round_trip_per_request(redis_url: str) -> None:
    limiter = RateLimiter(redis_url=redis_url, key_prefix=random_prefix())
    item = RateLimiter.parse("100000/minute")
    try:
        for _ in range(2000):
            assert (await limiter.hit(item, "user", "7")).allowed
        trips = limiter.round_trips
    finally:
        await limiter.close()
    # Leases double up to a tenth of the limit and are refilled in the background.
    assert trips <= 15


async def test_redis_stopped_counts_in_process_and_warns_once(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(redis_url=private_redis.url, key_prefix=random_prefix())
    try:
        assert await admitted(limiter, "5/minute", 2, "ip", "b") == 2
        await private_redis.stop()
        # In process, counting goes on from what this worker already let through.
        assert await admitted(limiter, "5/minute", 15, "ip", "b") == 3
    finally:
        await limiter.close()
    warnings = [r for r in caplog.records if "rate-limit storage unavailable" in r.getMessage()]
    assert len(warnings) == 1


async def test_redis_back_after_an_outage_is_used_again(private_redis: RedisServer) -> None:
    limiter = RateLimiter(redis_url=private_redis.url, key_prefix=random_prefix())
    item = RateLimiter.parse("1000/minute")
    try:
        await private_redis.stop()
        assert (await limiter.hit(item, "user", "c")).allowed  # counted in process
        await private_redis.start()
        limiter._down_until = 0.0  # the backoff has passed
        before = limiter.round_trips
        assert (await limiter.hit(item, "user", "d")).allowed
        client = Redis.from_url(private_redis.url)
        try:
            keys = [k async for k in client.scan_iter("*:user:d:*")]
        finally:
            await client.aclose()
    finally:
        await limiter.close()
    assert limiter.round_trips > before
    assert len(keys) == 1


async def test_busy_pool_waits_for_a_connection_instead_of_failing_open(redis_url: str) -> None:
    # One connection for 300 distinct keys at once: each lease waits its turn.
    limiter = RateLimiter(
        redis_url=redis_url, key_prefix=random_prefix(), pool_size=1, pool_timeout=5
    )
    item = RateLimiter.parse("1/minute")
    try:
        first = await asyncio.gather(*(limiter.hit(item, "ip", str(n)) for n in range(300)))
        second = await asyncio.gather(*(limiter.hit(item, "ip", str(n)) for n in range(300)))
        down = limiter._down_until
    finally:
        await limiter.close()
    assert all(d.allowed for d in first)
    assert not any(d.allowed for d in second)
    assert down < 0  # Redis was never given up on


async def test_pool_wait_timeout_falls_back_to_counting_not_to_passing(redis_url: str) -> None:
    limiter = RateLimiter(
        redis_url=redis_url, key_prefix=random_prefix(), pool_size=1, pool_timeout=0.001
    )
    item = RateLimiter.parse("1/minute")
    try:
        # 300 keys, each hit 3 times at once, through a single connection nobody waits
        # for: most leases fail, and those requests are counted in process instead.
        hits = [limiter.hit(item, "k", str(n)) for n in range(300) for _ in range(3)]
        decisions = await asyncio.gather(*hits)
        fell_back = limiter._down_until > 0
    finally:
        await limiter.close()
    assert fell_back
    per_key = [sum(d.allowed for d in decisions[n * 3 : n * 3 + 3]) for n in range(300)]
    # At most the limit through Redis plus the limit in process: never all three.
    assert max(per_key) <= 2
    assert sum(not d.allowed for d in decisions) >= 300


async def test_without_redis_counts_exactly_in_process() -> None:
    limiter = RateLimiter(redis_url="memory://")
    try:
        assert await admitted(limiter, "3/minute", 10, "ip", "e") == 3
        assert limiter.round_trips == 0
        assert not limiter.shared
    finally:
        await limiter.close()


async def test_remembered_marks_are_shared_through_redis(redis_url: str) -> None:
    prefix = random_prefix()
    first = RateLimiter(redis_url=redis_url, key_prefix=prefix)
    second = RateLimiter(redis_url=redis_url, key_prefix=prefix)
    try:
        await first.remember(60, "trusted", "account", "10.0.0.1")
        assert await second.remembers("trusted", "account", "10.0.0.1")
        assert not await second.remembers("trusted", "account", "10.0.0.2")
    finally:
        await first.close()
        await second.close()
