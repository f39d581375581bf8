"""200 sockets leaving a room at once, on a real server with Redis presence and a
small Redis pool: the member watching from another instance gets each one's
`offline` (none twice), and a fresh join lists only who is still there."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.rooms.wsclient import make_room
from tests.scale.cluster import WAIT, Listener, close_all, online_ids, run_instances, signup_many
from tests.support.brokers import random_prefix
from townsquare.rooms.protocol import PresenceFrame

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

LEAVERS = 200


async def test_200_sockets_leaving_at_once_each_produce_their_offline_event(
    shared_database_url: str, shared_redis_url: str, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": shared_database_url,
        "REDIS_URL": shared_redis_url,
        "BROKER_CHANNEL_PREFIX": random_prefix(),
        # Far fewer connections than leavers: presence updates wait for one, none is
        # dropped (the pool used to fail past its cap).
        "REDIS_POOL_SIZE": "4",
    }
    listeners: list[Listener] = []
    with run_instances(env, tmp_path) as (a, b):
        async with httpx.AsyncClient(base_url=a.base_url, timeout=WAIT) as http:
            watcher_member, *members = await signup_many(http, LEAVERS + 1, "Churn")
            room = await make_room(http, watcher_member)
        try:
            watcher = await Listener.open(b, watcher_member)
            listeners.append(watcher)
            await watcher.join(room)
            leavers = [await Listener.open(a, member) for member in members]
            listeners += leavers
            await asyncio.gather(*(leaver.join(room) for leaver in leavers))
            ids = {member.id for member in members}

            def seen(state: str) -> Counter[int]:
                return Counter(
                    f.user.id
                    for f in watcher.of(PresenceFrame, room=room, state=state)
                    if f.user.id in ids
                )

            everyone_online = await watcher.until(lambda: set(seen("online")) == ids)
            assert everyone_online, f"{len(seen('online'))} online of {LEAVERS}"

            await close_all(leavers)  # all at once

            everyone_offline = await watcher.until(lambda: set(seen("offline")) == ids)
            assert everyone_offline, f"{len(seen('offline'))} offline events of {LEAVERS}"
            # None twice among those that arrived.
            assert all(count == 1 for count in seen("offline").values())

            fresh = await Listener.open(b, watcher_member)
            listeners.append(fresh)
            assert online_ids(await fresh.join(room)) == {watcher_member.id}
        finally:
            await close_all(listeners)
