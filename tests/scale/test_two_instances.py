"""Two `townsquare serve` processes sharing PostgreSQL and Redis: delivery, presence
and session revocation across instances."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text

from tests.rooms.wsclient import Member, make_room, signup
from tests.scale.cluster import (
    WAIT,
    Listener,
    check_exactly_once,
    close_all,
    online_ids,
    signup_many,
)
from tests.support.server import ServerProcess
from townsquare.client import Api
from townsquare.platform.database import create_database
from townsquare.rooms.protocol import ByeFrame, PingFrame, PongFrame, PresenceFrame

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def test_senders_on_both_instances_reach_every_member_once_in_seq_order(
    instances: list[ServerProcess], https: list[httpx.AsyncClient]
) -> None:
    await check_exactly_once(instances, https)


async def test_user_leaving_on_one_instance_is_offline_on_the_other(
    instances: list[ServerProcess], https: list[httpx.AsyncClient]
) -> None:
    a, b = instances
    http_a, _ = https
    ann, bob = await signup_many(http_a, 2, "Presence")
    room = await make_room(http_a, ann)
    on_a = await Listener.open(a, ann)
    on_b = await Listener.open(b, bob)
    try:
        await on_a.join(room)
        assert ann.id in online_ids(await on_b.join(room))
        await on_a.close()
        await on_b.wait_for(PresenceFrame, user=ann.public, state="offline")
        fresh = await Listener.open(b, bob)
        try:
            assert online_ids(await fresh.join(room)) == {bob.id}
        finally:
            await fresh.close()
    finally:
        await close_all([on_a, on_b])


async def _make_admin(database_url: str, member: Member) -> None:
    database = create_database(database_url)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(
                text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": member.id}
            )
    finally:
        await database.dispose()


async def _assert_still_open(listener: Listener) -> None:
    before = len(listener.of(PongFrame))
    await listener.send(PingFrame(type="ping"))
    ponged = await listener.until(lambda: len(listener.of(PongFrame)) > before)
    assert ponged, f"{listener.member.name} got no pong"


async def test_logout_all_on_one_instance_closes_the_users_socket_on_the_other(
    instances: list[ServerProcess], https: list[httpx.AsyncClient]
) -> None:
    _, b = instances
    http_a, _ = https
    user = await signup(http_a, "Revoked")
    other = await signup(http_a, "Bystander")
    victim = await Listener.open(b, user)
    bystander = await Listener.open(b, other)
    try:
        async with Api(instances[0].base_url, token=user.token) as api:
            await api.logout_all()
        await asyncio.wait_for(asyncio.shield(victim.task), WAIT)  # type: ignore[arg-type]
        assert victim.close_code == 1008
        assert victim.of(ByeFrame)[-1].reason == "session revoked"
        await _assert_still_open(bystander)
    finally:
        await close_all([victim, bystander])


async def test_admin_disabling_a_user_on_one_instance_closes_its_socket_on_the_other(
    instances: list[ServerProcess], https: list[httpx.AsyncClient], shared_database_url: str
) -> None:
    _, b = instances
    http_a, _ = https
    admin, user, other = await signup_many(http_a, 3, "Admin")
    await _make_admin(shared_database_url, admin)
    victim = await Listener.open(b, user)
    bystander = await Listener.open(b, other)
    try:
        response = await http_a.patch(
            f"/users/{user.id}", json={"is_active": False}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        await asyncio.wait_for(asyncio.shield(victim.task), WAIT)  # type: ignore[arg-type]
        assert victim.close_code == 1008
        assert victim.of(ByeFrame)[-1].reason == "session revoked"
        await _assert_still_open(bystander)
    finally:
        await close_all([victim, bystander])


async def test_retry_on_the_other_instance_is_stored_and_delivered_once(
    instances: list[ServerProcess], https: list[httpx.AsyncClient]
) -> None:
    # No sticky sessions: a client whose retry lands on another instance (REST with
    # the same Idempotency-Key, or /ws `send` with the same client_id) is deduplicated
    # by the shared database.
    a, b = instances
    http_a, http_b = https
    poster, reader = await signup_many(http_a, 2, "Retry")
    room = await make_room(http_a, poster)
    watcher = await Listener.open(a, reader)
    sender_a = await Listener.open(a, poster)
    sender_b = await Listener.open(b, poster)
    try:
        await watcher.join(room)
        headers = {**poster.headers, "Idempotency-Key": "retry-1"}
        first = await http_a.post(f"/rooms/{room}/messages", json={"body": "x"}, headers=headers)
        again = await http_b.post(f"/rooms/{room}/messages", json={"body": "x"}, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json() == first.json()

        await sender_a.join(room)
        await sender_b.join(room)
        await sender_a.say(room, "y", client_id="retry-2")
        assert await watcher.has_seq(room, 2)
        await sender_b.say(room, "y", client_id="retry-2")
        async with Api(b.base_url, token=poster.token) as api:
            end = await api.post_message(room, "z")
        assert end.seq == 3
        assert await watcher.has_seq(room, 3)
        assert [(m.seq, m.body) for m in watcher.messages(room)] == [
            (1, "x"),
            (2, "y"),
            (3, "z"),
        ]
    finally:
        await close_all([watcher, sender_a, sender_b])


async def _refused_within(
    http: httpx.AsyncClient, member: Member, seconds: float
) -> httpx.Response:
    """Poll an authenticated read until it is refused; fail if it is still served
    `seconds` after the call."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        response = await http.get(f"/users/{member.id}", headers=member.headers)
        if response.status_code != 200:
            return response
        assert asyncio.get_running_loop().time() < deadline, (
            f"{member.name}'s old token still served after {seconds} s"
        )
        await asyncio.sleep(0.01)


async def test_account_changes_on_one_instance_refuse_old_tokens_on_the_other_within_1s(
    instances: list[ServerProcess], https: list[httpx.AsyncClient], shared_database_url: str
) -> None:
    # Each instance caches the signed-in user (PRINCIPAL_CACHE_TTL_SECONDS, 30 s by
    # default); what makes B refuse at once is the change announced by A.
    http_a, http_b = https
    admin, disabled, bumped, bystander = await signup_many(http_a, 4, "Cached")
    await _make_admin(shared_database_url, admin)
    logged_out = await signup(http_a, "Leaving")
    for member in (disabled, bumped, logged_out, bystander):
        assert (await http_b.get(f"/users/{member.id}", headers=member.headers)).status_code == 200

    response = await http_a.patch(
        f"/users/{disabled.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert (await _refused_within(http_b, disabled, 1.0)).status_code == 401

    # A token version bump (logout from everywhere; a password change does the same).
    response = await http_a.post("/auth/logout-all", headers=bumped.headers)
    assert response.status_code == 204, response.text
    assert (await _refused_within(http_b, bumped, 1.0)).status_code == 401

    # One login ended: its access token carries the login's id (`sid`).
    assert logged_out.refresh_token is not None
    async with Api(str(http_a.base_url)) as api:
        await api.logout(logged_out.refresh_token)
    assert (await _refused_within(http_b, logged_out, 1.0)).status_code == 401

    assert (
        await http_b.get(f"/users/{bystander.id}", headers=bystander.headers)
    ).status_code == 200
