"""One presence contract on memory and on the real Redis (random key prefix per test)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from tests.support.brokers import eventually, random_prefix, require_shared_redis
from townsquare.platform.presence import (
    Entry,
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


def entry(room: str, user: int, connection: str, name: str | None = None) -> Entry:
    return Entry(room, user, name or f"user {user}", connection)


async def ids(presence: PresenceStore, room: str) -> set[int]:
    return {user_id for user_id, _ in (await presence.online(room, limit=100)).users}


async def test_enter_shows_the_user_in_that_room_only(presence: PresenceStore) -> None:
    entered = await presence.enter(entry("room:1", 1, "c1"), LONG, limit=100)
    assert entered.came_online
    assert entered.online.count == 1
    assert entered.online.users == [(1, "user 1")]
    assert await ids(presence, "room:1") == {1}
    assert await ids(presence, "room:2") == set()


async def test_user_with_two_connections_goes_offline_once_when_both_leave(
    presence: PresenceStore,
) -> None:
    assert (await presence.enter(entry("room", 1, "phone"), LONG, limit=100)).came_online
    assert not (await presence.enter(entry("room", 1, "laptop"), LONG, limit=100)).came_online
    await presence.enter(entry("room", 2, "b1"), LONG, limit=100)
    assert not await presence.leave(entry("room", 1, "phone"))
    assert await ids(presence, "room") == {1, 2}
    assert await presence.leave(entry("room", 1, "laptop"))
    assert await ids(presence, "room") == {2}


async def test_leave_twice_or_unknown_is_harmless_and_reports_offline_once(
    presence: PresenceStore,
) -> None:
    assert not await presence.leave(entry("empty", 9, "c0"))
    await presence.enter(entry("room", 1, "c1"), LONG, limit=100)
    assert await presence.leave(entry("room", 1, "c1"))
    assert not await presence.leave(entry("room", 1, "c1"))
    assert await ids(presence, "room") == set()


async def test_online_lists_at_most_the_limit_and_counts_everyone(presence: PresenceStore) -> None:
    for user in range(1, 8):
        await presence.enter(entry("room", user, f"c{user}"), LONG, limit=3)
    online = await presence.online("room", limit=3)
    assert online.count == 7
    assert len(online.users) == 3
    entered = await presence.enter(entry("room", 8, "c8"), LONG, limit=5)
    assert entered.online.count == 8
    assert len(entered.online.users) == 5


async def test_rename_keeps_one_entry_with_the_new_name(presence: PresenceStore) -> None:
    await presence.enter(entry("room", 1, "c1", name="Ann"), LONG, limit=100)
    await presence.enter(entry("room", 1, "c2", name="Annie"), LONG, limit=100)
    online = await presence.online("room", limit=100)
    assert online.count == 1
    assert online.users == [(1, "Annie")]


async def test_entry_not_refreshed_expires_and_is_swept_once(make_presence: MakePresence) -> None:
    first, second = make_presence(), make_presence()
    await first.enter(entry("room", 1, "ghost"), 0.3, limit=100)
    await first.enter(entry("room", 2, "alive"), LONG, limit=100)
    assert await eventually(lambda: _ids_are(first, "room", {2}), WAIT)
    # Both instances sweep; the expired user is reported to exactly one of them.
    swept = await asyncio.gather(first.sweep("room"), second.sweep("room"))
    assert sorted(swept[0] + swept[1]) == [(1, "user 1")]
    assert await first.sweep("room") == []
    assert not await first.leave(entry("room", 1, "ghost"))  # already reported offline


async def test_refresh_keeps_an_entry_past_its_first_ttl(presence: PresenceStore) -> None:
    await presence.enter(entry("room", 1, "c1"), 1.5, limit=100)
    for _ in range(4):  # 2 s in all, refreshed every 0.5 s
        await asyncio.sleep(0.5)
        assert await presence.refresh([entry("room", 1, "c1")], 1.5) == []
    assert await ids(presence, "room") == {1}


async def test_refresh_after_a_sweep_brings_the_user_back_and_says_so(
    presence: PresenceStore,
) -> None:
    await presence.enter(entry("room", 1, "c1"), 0.2, limit=100)
    assert await eventually(lambda: _ids_are(presence, "room", set()), WAIT)
    assert await presence.sweep("room") == [(1, "user 1")]
    back = await presence.refresh([entry("room", 1, "c1"), entry("room", 2, "new")], LONG)
    assert {e.user_id for e in back} == {1, 2}
    assert await ids(presence, "room") == {1, 2}


async def test_dead_instance_users_vanish_for_the_other_instance(
    make_presence: MakePresence,
) -> None:
    survivor, doomed = make_presence(), make_presence()
    await survivor.enter(entry("room", 1, "a1"), LONG, limit=100)
    await doomed.enter(entry("room", 2, "b1"), 0.5, limit=100)  # then it dies: no refresh
    assert await ids(survivor, "room") == {1, 2}
    assert await eventually(lambda: _ids_are(survivor, "room", {1}), WAIT)


async def test_random_joins_and_leaves_on_two_instances_give_exact_transitions(
    make_presence: MakePresence,
) -> None:
    """200 joins and leaves in random order over two instances: every user comes
    online exactly once per visit and goes offline exactly once."""
    stores = [make_presence(), make_presence()]
    rng = random.Random(7)
    users = list(range(1, 21))
    # Each user opens 5 connections spread over the two instances, then closes them.
    opens = [(user, f"c{user}-{n}", stores[n % 2]) for user in users for n in range(5)]
    rng.shuffle(opens)
    entered = await asyncio.gather(
        *(store.enter(entry("room", user, conn), LONG, limit=100) for user, conn, store in opens)
    )
    came = sorted(
        user for (user, _, _), result in zip(opens, entered, strict=True) if result.came_online
    )
    assert came == users
    rng.shuffle(opens)
    left = await asyncio.gather(
        *(store.leave(entry("room", user, conn)) for user, conn, store in opens)
    )
    went = sorted(user for (user, _, _), offline in zip(opens, left, strict=True) if offline)
    assert went == users
    assert await ids(stores[0], "room") == set()


async def _ids_are(presence: PresenceStore, room: str, users: set[int]) -> bool:
    return await ids(presence, room) == users


async def test_redis_presence_unreachable_raises_presence_unavailable() -> None:
    store = RedisPresence("redis://127.0.0.1:1/0", prefix=random_prefix(), timeout=0.5)
    try:
        with pytest.raises(PresenceUnavailable):
            await asyncio.wait_for(store.enter(entry("room", 1, "c1"), LONG, limit=100), WAIT)
        with pytest.raises(PresenceUnavailable):
            await asyncio.wait_for(store.online("room", limit=100), WAIT)
    finally:
        await store.aclose()


def test_create_presence_picks_the_store_by_url_scheme() -> None:
    assert isinstance(create_presence(None), MemoryPresence)
    assert isinstance(create_presence("memory://"), MemoryPresence)
    assert isinstance(create_presence("redis://127.0.0.1:6379/0"), RedisPresence)
    with pytest.raises(ValueError, match="unsupported presence URL scheme"):
        create_presence("amqp://localhost")


async def test_redis_presence_keys_expire_after_their_last_entry() -> None:
    url = await require_shared_redis()
    prefix = random_prefix()
    store = RedisPresence(url, prefix=prefix)
    inspector = Redis.from_url(url)
    try:
        await store.enter(entry("room", 1, "c1"), 0.3, limit=100)
        keys = await inspector.keys(f"{prefix}*")
        assert len(keys) == 3
        for key in keys:
            # Each key expires (60 s grace after its latest entry): nothing is left behind.
            assert 0 < await inspector.pttl(key) <= 61_000
    finally:
        await store.aclose()
        await inspector.aclose()
