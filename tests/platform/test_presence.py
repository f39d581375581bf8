"""One presence contract on memory and on the real Redis (random key prefix per test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from tests.support.brokers import eventually, random_prefix, require_shared_redis
from townsquare.platform.presence import (
    MemoryPresence,
    PresenceStore,
    PresenceUnavailable,
    RedisPresence,
    create_presence,
)

LONG = 60.0  # a TTL no test outlives
WAIT = 10.0  # a bound against hangs, never a measurement

MakePresence = Callable[[], PresenceStore]


@pytest.fixture(params=["memory", "redis"])
async def make_presence(request: pytest.FixtureRequest) -> AsyncIterator[MakePresence]:
    """Stores of one kind; Redis stores made by one call share a prefix (one deployment)."""
    made: list[PresenceStore] = []
    if request.param == "memory":
        shared = MemoryPresence()  # one process: every "instance" is the same store
        made.append(shared)

        def make() -> PresenceStore:
            return shared
    else:
        url = await require_shared_redis()
        prefix = random_prefix()

        def make() -> PresenceStore:
            store = create_presence(url, prefix=prefix)
            made.append(store)
            return store

    yield make
    for store in made:
        await store.aclose()


@pytest.fixture
def presence(make_presence: MakePresence) -> PresenceStore:
    return make_presence()


async def test_mark_online_shows_the_user_in_that_room_only(presence: PresenceStore) -> None:
    await presence.mark_online("room:1", "alice", "c1", LONG)
    assert await presence.online("room:1") == {"alice"}
    assert await presence.online("room:2") == set()


async def test_user_with_two_connections_stays_online_until_both_leave(
    presence: PresenceStore,
) -> None:
    await presence.mark_online("room", "alice", "phone", LONG)
    await presence.mark_online("room", "alice", "laptop", LONG)
    await presence.mark_online("room", "bob", "b1", LONG)
    await presence.mark_offline("room", "alice", "phone")
    assert await presence.online("room") == {"alice", "bob"}
    await presence.mark_offline("room", "alice", "laptop")
    assert await presence.online("room") == {"bob"}


async def test_mark_offline_twice_or_unknown_is_harmless(presence: PresenceStore) -> None:
    await presence.mark_offline("empty", "nobody", "c0")
    await presence.mark_online("room", "alice", "c1", LONG)
    await presence.mark_offline("room", "alice", "c1")
    await presence.mark_offline("room", "alice", "c1")
    assert await presence.online("room") == set()


async def test_ids_that_look_alike_do_not_collide(presence: PresenceStore) -> None:
    # "ab" + "c" and "a" + "bc" must stay two different entries.
    await presence.mark_online("room", "ab", "c", LONG)
    await presence.mark_online("room", "a", "bc", LONG)
    await presence.mark_offline("room", "a", "bc")
    assert await presence.online("room") == {"ab"}
    await presence.mark_online("room", "1:x", "é:✓", LONG)
    assert await presence.online("room") == {"ab", "1:x"}


async def test_entry_not_refreshed_expires_within_its_ttl(presence: PresenceStore) -> None:
    await presence.mark_online("room", "ghost", "c1", 0.3)
    await presence.mark_online("room", "alice", "c2", LONG)
    assert await eventually(lambda: _online_is(presence, "room", {"alice"}), WAIT)


async def test_refresh_keeps_an_entry_past_its_first_ttl(presence: PresenceStore) -> None:
    await presence.mark_online("room", "alice", "c1", 1.5)
    for _ in range(4):  # 2 s in all, refreshed every 0.5 s
        await asyncio.sleep(0.5)
        await presence.refresh("room", "alice", "c1", 1.5)
    assert await presence.online("room") == {"alice"}


async def test_dead_instance_users_vanish_for_the_other_instance(
    make_presence: MakePresence,
) -> None:
    survivor, doomed = make_presence(), make_presence()
    await survivor.mark_online("room", "alice", "a1", LONG)
    await doomed.mark_online("room", "bob", "b1", 0.5)  # then it dies: no refresh
    assert await survivor.online("room") == {"alice", "bob"}
    assert await eventually(lambda: _online_is(survivor, "room", {"alice"}), WAIT)


async def _online_is(presence: PresenceStore, room: str, users: set[str]) -> bool:
    return await presence.online(room) == users


async def test_redis_presence_unreachable_raises_presence_unavailable() -> None:
    store = RedisPresence("redis://127.0.0.1:1/0", prefix=random_prefix(), timeout=0.5)
    try:
        with pytest.raises(PresenceUnavailable):
            await asyncio.wait_for(store.mark_online("room", "alice", "c1", LONG), WAIT)
        with pytest.raises(PresenceUnavailable):
            await asyncio.wait_for(store.online("room"), WAIT)
    finally:
        await store.aclose()


def test_create_presence_picks_the_store_by_url_scheme() -> None:
    assert isinstance(create_presence(None), MemoryPresence)
    assert isinstance(create_presence("memory://"), MemoryPresence)
    assert isinstance(create_presence("redis://127.0.0.1:6379/0"), RedisPresence)
    with pytest.raises(ValueError, match="unsupported presence URL scheme"):
        create_presence("amqp://localhost")


async def test_redis_presence_key_expires_with_its_last_member() -> None:
    url = await require_shared_redis()
    prefix = random_prefix()
    store = RedisPresence(url, prefix=prefix)
    inspector = Redis.from_url(url)
    try:
        await store.mark_online("room", "alice", "c1", 0.3)
        assert await inspector.exists(f"{prefix}presence:room") == 1

        async def gone() -> bool:
            return await inspector.exists(f"{prefix}presence:room") == 0

        assert await eventually(gone, WAIT)
    finally:
        await store.aclose()
        await inspector.aclose()
