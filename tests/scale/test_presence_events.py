"""Presence across two instances: joins and leaves in random order over both give
each user exactly one `online` and one `offline` in the room, and a rename keeps one
entry."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.rooms.wsclient import make_room
from tests.scale.cluster import WAIT, Listener, close_all, signup_many
from tests.support.server import ServerProcess
from townsquare.rooms.protocol import PresenceFrame, TypingEventFrame, TypingFrame
from townsquare.users.schemas import UserPublic

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

USERS = 20
SOCKETS_PER_USER = 5  # 100 joins and 100 leaves


@pytest.fixture
async def http(instances: list[ServerProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=instances[0].base_url, timeout=WAIT) as client:
        yield client


def _transitions(observer: Listener, room: str) -> dict[int, list[str]]:
    seen: dict[int, list[str]] = defaultdict(list)
    for frame in observer.of(PresenceFrame, room=room):
        seen[frame.user.id].append(frame.state)
    return seen


async def test_random_joins_and_leaves_on_two_instances_give_one_online_and_one_offline(
    instances: list[ServerProcess], http: httpx.AsyncClient
) -> None:
    a, b = instances
    observer_member, *members = await signup_many(http, USERS + 1, "Presence")
    room = await make_room(http, observer_member)
    observer = await Listener.open(a, observer_member)
    sockets: list[Listener] = []
    try:
        await observer.join(room)
        rng = random.Random(11)
        plan = [(m, (a, b)[n % 2]) for m in members for n in range(SOCKETS_PER_USER)]
        rng.shuffle(plan)
        sockets = list(await asyncio.gather(*(Listener.open(s, m) for m, s in plan)))
        await asyncio.gather(*(socket.join(room) for socket in sockets))
        every_online = await observer.until(lambda: len(_transitions(observer, room)) == USERS)
        assert every_online, "timed out waiting for every user's online event"
        rng.shuffle(sockets)
        await asyncio.gather(*(socket.close() for socket in sockets))
        every_offline = await observer.until(
            lambda: (
                sum(s == ["online", "offline"] for s in _transitions(observer, room).values())
                == USERS
            )
        )
        assert every_offline, "timed out waiting for every user's offline event"
        # Nothing more is on its way: a frame published on each instance after the
        # leaves arrives, and still each user has exactly its two events.
        marker_a = await Listener.open(a, members[0])
        marker_b = await Listener.open(b, members[1])
        sockets = [marker_a, marker_b]
        for marker in (marker_a, marker_b):
            await marker.join(room)
            await marker.send(TypingFrame(type="typing", room=room))
        both_markers = await observer.until(
            lambda: len(observer.of(TypingEventFrame, room=room)) == 2
        )
        assert both_markers, "timed out waiting for both markers"
        states = _transitions(observer, room)
        assert {uid: s[:2] for uid, s in states.items()} == {
            m.id: ["online", "offline"] for m in members
        }
        # The two marker sockets came back online after that, once each.
        assert sorted(uid for uid, s in states.items() if len(s) == 3) == sorted(
            [members[0].id, members[1].id]
        )
    finally:
        await close_all([observer, *sockets])


async def test_rename_keeps_one_presence_entry_with_the_new_name(
    instances: list[ServerProcess], http: httpx.AsyncClient
) -> None:
    a, b = instances
    owner, renamed = await signup_many(http, 2, "Rename")
    room = await make_room(http, owner)
    first = await Listener.open(a, renamed)
    second: Listener | None = None
    observer: Listener | None = None
    try:
        await first.join(room)
        changed = await http.patch("/me", json={"name": "New Name"}, headers=renamed.headers)
        assert changed.status_code == 200, changed.text
        second = await Listener.open(b, renamed)
        await second.join(room)
        observer = await Listener.open(b, owner)
        joined = await observer.join(room)
        mine = [user for user in joined.online if user.id == renamed.id]
        assert mine == [UserPublic(id=renamed.id, name="New Name")]
        assert joined.online_count == 2  # the renamed user once, and the observer
    finally:
        await close_all([s for s in (first, second, observer) if s is not None])
