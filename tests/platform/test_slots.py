"""One contract for both slot stores (in memory and a real Redis), plus what only the
Redis one does: leases that end with a dead instance, and counting in this process
while Redis cannot answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.brokers import random_prefix, require_shared_redis
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
