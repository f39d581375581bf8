"""Authority follows changes live across instances: a change made on one instance
takes the affected sockets on the other out of the room at once (`left`), and
nothing more of that room reaches them."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import text

from tests.rooms.wsclient import Member, make_room, signup
from tests.scale.cluster import Listener, close_all
from tests.support.server import ServerProcess
from townsquare.client import Api
from townsquare.platform.database import create_database
from townsquare.rooms.protocol import ErrorFrame, JoinFrame, LeftFrame, SendFrame

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# The bound the issue sets on "at once"; the time is measured from the REST answer.
LEFT_WITHIN = 2.0


async def _make_admin(database_url: str, member: Member) -> None:
    database = create_database(database_url, pool_size=1, max_overflow=0)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(
                text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": member.id}
            )
    finally:
        await database.dispose()


async def _left_in_time(listener: Listener, room: str, reason: str, since: float) -> None:
    left = await listener.wait_for(LeftFrame, room=room)
    assert left.reason == reason
    assert time.monotonic() - since < LEFT_WITHIN


async def _nothing_more_of(
    listener: Listener, room: str, http: httpx.AsyncClient, owner: Member, lobby: str
) -> None:
    """A message in `room` then one in `lobby`: the listener gets the lobby one (the
    signal that both went out) and nothing of `room` after its `left`."""
    before = len(listener.messages(room))
    async with Api(str(http.base_url), token=owner.token) as api:
        await api.post_message(room, "secret")
        marker = await api.post_message(lobby, "marker")
    assert await listener.has_seq(lobby, marker.seq)
    assert len(listener.messages(room)) == before
    # And it cannot send into the room it was taken out of.
    await listener.send(SendFrame(type="send", room=room, body="still here?", ref="late"))
    error = await listener.wait_for(ErrorFrame, ref="late")
    assert error.code == "not_joined"


async def test_member_removed_on_one_instance_leaves_at_once_on_the_other(
    instances: list[ServerProcess], https: list[httpx.AsyncClient]
) -> None:
    _, b = instances
    http_a, _ = https
    owner, member = await signup(http_a, "Owner"), await signup(http_a, "Member")
    room = await make_room(http_a, owner, private=True)
    lobby = await make_room(http_a, owner)
    added = await http_a.put(f"/rooms/{room}/members/{member.id}", headers=owner.headers)
    assert added.status_code == 200, added.text
    listener = await Listener.open(b, member)
    try:
        await listener.join(room)
        await listener.join(lobby)
        removed = await http_a.delete(f"/rooms/{room}/members/{member.id}", headers=owner.headers)
        assert removed.status_code == 204, removed.text
        await _left_in_time(listener, room, "removed", time.monotonic())
        await _nothing_more_of(listener, room, http_a, owner, lobby)
        refused = await http_a.post(
            f"/rooms/{room}/messages", json={"body": "x"}, headers=member.headers
        )
        assert refused.status_code == 404
    finally:
        await close_all([listener])


async def test_admin_demoted_on_one_instance_leaves_private_rooms_on_the_other(
    instances: list[ServerProcess], https: list[httpx.AsyncClient], shared_database_url: str
) -> None:
    _, b = instances
    http_a, _ = https
    owner, boss, admin = (
        await signup(http_a, "Owner"),
        await signup(http_a, "Boss"),
        await signup(http_a, "Admin"),
    )
    await _make_admin(shared_database_url, boss)
    await _make_admin(shared_database_url, admin)
    room = await make_room(http_a, owner, private=True)
    lobby = await make_room(http_a, owner)
    listener = await Listener.open(b, admin)
    try:
        await listener.join(room)  # an admin may join any private room
        await listener.join(lobby)
        demoted = await http_a.patch(
            f"/users/{admin.id}", json={"is_admin": False}, headers=boss.headers
        )
        assert demoted.status_code == 200, demoted.text
        await _left_in_time(listener, room, "access_revoked", time.monotonic())
        await _nothing_more_of(listener, room, http_a, owner, lobby)
        # The public room is untouched, and a new join of the private one is refused.
        assert not listener.of(LeftFrame, room=lobby)
        await listener.send(JoinFrame(type="join", room=room, ref="again"))
        error = await listener.wait_for(ErrorFrame, ref="again")
        assert error.code == "room_not_found"
    finally:
        await close_all([listener])


async def test_room_made_private_or_deleted_takes_everyone_out_on_every_instance(
    instances: list[ServerProcess], https: list[httpx.AsyncClient]
) -> None:
    a, b = instances
    http_a, _ = https
    owner, guest = await signup(http_a, "Owner"), await signup(http_a, "Guest")
    room = await make_room(http_a, owner)
    lobby = await make_room(http_a, owner)
    guest_socket = await Listener.open(b, guest)
    owner_socket = await Listener.open(a, owner)
    try:
        for listener in (guest_socket, owner_socket):
            await listener.join(room)
        await guest_socket.join(lobby)
        made_private = await http_a.patch(
            f"/rooms/{room}", json={"private": True}, headers=owner.headers
        )
        assert made_private.status_code == 200, made_private.text
        assert made_private.json()["private"] is True
        await _left_in_time(guest_socket, room, "access_revoked", time.monotonic())
        await _nothing_more_of(guest_socket, room, http_a, owner, lobby)
        assert not owner_socket.of(LeftFrame)  # the owner is a member: stays
        deleted = await http_a.delete(f"/rooms/{room}", headers=owner.headers)
        assert deleted.status_code == 204, deleted.text
        await _left_in_time(owner_socket, room, "room_deleted", time.monotonic())
        gone = await http_a.get(f"/rooms/{room}", headers=owner.headers)
        assert gone.status_code == 404
    finally:
        await close_all([guest_socket, owner_socket])
