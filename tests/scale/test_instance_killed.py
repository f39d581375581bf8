"""One of two instances killed with SIGKILL during traffic: its members move to the
other and recover gap-free with `since`, and its users leave presence within the TTL."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.rooms.wsclient import history, make_room
from tests.scale.cluster import (
    WAIT,
    Listener,
    Traffic,
    close_all,
    online_ids,
    run_instances,
    signup_many,
)
from tests.support.brokers import eventually, random_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

HEARTBEAT = 1.0  # seconds; presence TTL = 3 heartbeats
KEEPALIVE = 0.5


async def test_instance_killed_moves_its_members_gap_free_and_drops_its_users_from_presence(
    shared_database_url: str, shared_redis_url: str, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": shared_database_url,
        "REDIS_URL": shared_redis_url,
        "BROKER_CHANNEL_PREFIX": random_prefix(),
        "WS_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT),
        "WS_HEARTBEAT_TIMEOUT_SECONDS": "5",
    }
    listeners: list[Listener] = []
    with run_instances(env, tmp_path) as (a, b):
        async with (
            httpx.AsyncClient(base_url=a.base_url, timeout=WAIT) as http_a,
            httpx.AsyncClient(base_url=b.base_url, timeout=WAIT) as http_b,
        ):
            try:
                movers_and_gone = await signup_many(http_b, 4, "OnA")
                movers, gone = movers_and_gone[:3], movers_and_gone[3]
                stayer, watcher, poster_a, poster_b = await signup_many(http_b, 4, "OnB")
                room = await make_room(http_b, stayer)
                on_a = [await Listener.open(a, m, keepalive=KEEPALIVE) for m in movers_and_gone]
                on_b = await Listener.open(b, stayer, keepalive=KEEPALIVE)
                listeners += [*on_a, on_b]
                for listener in on_a:
                    await listener.join(room)
                joined = await on_b.join(room)
                assert {m.id for m in movers_and_gone} <= online_ids(joined)

                traffic = Traffic(room, [(http_a, poster_a), (http_b, poster_b)])
                traffic.start()
                try:
                    assert await eventually(lambda: len(traffic.stored) >= 20, WAIT)
                    for listener in listeners:
                        assert await listener.has_seq(room, traffic.last_seq(0))

                    a.process.kill()  # SIGKILL, by the PID this test started
                    a.process.wait(timeout=10)
                    killed_at = time.monotonic()
                    traffic.skip.add(0)  # from now on, post to B only
                    assert await eventually(lambda: all(x.is_closed for x in on_a), 10)

                    # The movers reconnect to B and resume where they were.
                    resumed = []
                    for old in on_a[:3]:
                        new = await Listener.open(b, old.member, keepalive=KEEPALIVE)
                        listeners.append(new)
                        await new.join(room, since=old.last_seq(room))
                        resumed.append((old, new))

                    # The user that did not come back leaves `online` within the TTL,
                    # as seen by a fresh join on B (by a member that only watches).
                    probe = await Listener.open(b, watcher, keepalive=KEEPALIVE)
                    listeners.append(probe)

                    async def gone_offline() -> bool:
                        return gone.id not in online_ids(await probe.join(room))

                    assert await eventually(gone_offline, 3 * HEARTBEAT + 5)
                    offline_after = time.monotonic() - killed_at
                    still_online = online_ids(await probe.join(room))
                    assert {m.id for m in movers} <= still_online

                    stored_after_kill = len(traffic.stored)
                    assert await eventually(
                        lambda: len(traffic.stored) - stored_after_kill >= 20, WAIT
                    )
                finally:
                    await traffic.stop()
                assert not traffic.failures, traffic.failures[:3]

                stored = await history(http_b, room, stayer)
                total = len(stored)
                assert [m.seq for m in stored] == list(range(1, total + 1))
                bodies = [m.body for m in stored]
                for old, new in resumed:
                    assert await new.has_seq(room, total)
                    got = old.messages(room) + new.messages(room)
                    assert [m.seq for m in got] == list(range(1, total + 1)), old.member.name
                    assert [m.body for m in got] == bodies
                # The member on B went on undisturbed.
                assert await on_b.has_seq(room, total)
                assert on_b.seqs(room) == list(range(1, total + 1))
                assert b.process.poll() is None
                print(
                    "\nInstance killed figures:",
                    {
                        "presence_ttl_seconds": 3 * HEARTBEAT,
                        "seconds_until_gone_user_offline": round(offline_after, 2),
                        "stored_in_all": total,
                        "resumed_from": [old.last_seq(room) for old, _ in resumed],
                    },
                )
            finally:
                await close_all(listeners)
