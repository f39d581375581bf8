"""One contract for both slot stores (in memory and a real Redis), plus what only the
Redis one does: leases that end with a dead instance, and counting in this process
while Redis cannot answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.brokers import RedisServer, random_prefix, require_shared_redis
from tests.support.server import free_port
from townsquare.platform.slots import MemorySlots, RedisSlots, SlotStore


@pytest.fixture(params=["memory", "redis"])
async def slots(request: pytest.FixtureRequest) -> AsyncIterator[SlotStore]:
    store: SlotStore
    if request.param == "memory":
        store = MemorySlots()
    else:
        store = RedisSlots(await require_shared_redis(), prefix=random_prefix())
    yield store
    await store.aclose()


async def test_at_most_limit_holders_then_a_release_frees_one(slots: SlotStore) -> None:
    assert [await slots.acquire("user:1", f"s{i}", 3) for i in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert await slots.acquire("user:2", "s9", 3), "another key has its own slots"
    assert await slots.acquire("user:1", "s0", 3), "a holder asking again keeps its slot"
    await slots.release("user:1", "s1")
    await slots.release("user:1", "s1")  # idempotent
    assert await slots.acquire("user:1", "s3", 3)
    assert not await slots.acquire("user:1", "s4", 3)


async def test_concurrent_claims_never_exceed_the_limit(slots: SlotStore) -> None:
    start = asyncio.Event()

    async def claim(holder: str) -> bool:
        await start.wait()
        return await slots.acquire("user:7", holder, 5)

    claims = [asyncio.create_task(claim(f"s{i}")) for i in range(40)]
    start.set()
    assert sum(await asyncio.gather(*claims)) == 5


async def test_slots_of_a_dead_instance_end_with_their_lease() -> None:
    url = await require_shared_redis()
    prefix = random_prefix()
    dead = RedisSlots(url, prefix=prefix, lease_seconds=0.5)
    alive = RedisSlots(url, prefix=prefix, lease_seconds=0.5)
    try:
        assert await dead.acquire("user:1", "a", 1)
        await dead.aclose()  # stops renewing without giving the slot back
        assert not await alive.acquire("user:1", "b", 1)
        await asyncio.sleep(0.7)
        assert await alive.acquire("user:1", "b", 1)
        # A live holder is renewed: its slot outlasts several leases.
        await asyncio.sleep(1.2)
        assert not await alive.acquire("user:1", "c", 1)
    finally:
        await alive.aclose()


async def test_without_redis_slots_are_counted_in_this_process() -> None:
    store = RedisSlots(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    try:
        assert await store.acquire("user:1", "a", 2)
        assert await store.acquire("user:1", "b", 2)
        assert not await store.acquire("user:1", "c", 2)
        await store.release("user:1", "a")
        assert await store.acquire("user:1", "c", 2)
    finally:
        await store.aclose()


async def test_two_instances_claiming_at_once_never_exceed_the_limit_together() -> None:
    url, prefix = await require_shared_redis(), random_prefix()
    stores = [RedisSlots(url, prefix=prefix), RedisSlots(url, prefix=prefix)]
    start = asyncio.Event()

    async def claim(store: RedisSlots, holder: str) -> bool:
        await start.wait()
        return await store.acquire("user:7", holder, 5)

    try:
        claims = [
            asyncio.create_task(claim(store, f"{n}-s{i}"))
            for n, store in enumerate(stores)
            for i in range(30)
        ]
        start.set()
        assert sum(await asyncio.gather(*claims)) == 5
    finally:
        for store in stores:
            await store.aclose()


async def test_claims_made_together_share_round_trips(tmp_path: Path) -> None:
    # A fresh redis-server: the script is not loaded there yet, so the first batch
    # also shows that a batch is sent again once the script is.
    redis = RedisServer(tmp_path)
    await redis.start()
    store = RedisSlots(redis.url, prefix=random_prefix())
    pipelines = 0
    send = store._batches._pipeline

    async def counted(commands: list[tuple[Any, ...]]) -> list[Any]:
        nonlocal pipelines
        pipelines += 1
        return await send(commands)

    store._batches._pipeline = counted  # type: ignore[method-assign]
    try:
        taken = await asyncio.gather(
            *(store.acquire(f"user:{i % 4}", f"s{i}", 3) for i in range(40))
        )
        assert sum(taken) == 12  # 3 for each of the 4 users
        assert pipelines <= 2, f"{pipelines} round trips for 40 claims made together"
        await asyncio.gather(*(store.release(f"user:{i % 4}", f"s{i}") for i in range(40)))
        assert await store.acquire("user:0", "again", 1)
    finally:
        await store.aclose()
        await redis.stop()
