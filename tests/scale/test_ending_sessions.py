"""Ending sessions across two instances: a password reset asked on one and confirmed
on the other ends every old session of the account on both at once (refresh tokens,
access tokens, open WebSockets); deleting one session ends that one only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.rooms.wsclient import Member
from tests.scale.cluster import WAIT, Listener, close_all, run_instances
from tests.support.brokers import eventually, random_prefix
from tests.support.server import ServerProcess
from tests.support.smtp import MailServer, token_in
from tests.support.worker import worker
from townsquare.rooms.protocol import PingFrame, PongFrame

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PASSWORD = "the old password"


@pytest.fixture(scope="module")
async def mail_server() -> AsyncIterator[MailServer]:
    server = MailServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def env(shared_database_url: str, shared_redis_url: str, mail_server: MailServer) -> dict[str, str]:
    return {
        "DATABASE_URL": shared_database_url,
        "REDIS_URL": shared_redis_url,
        "BROKER_CHANNEL_PREFIX": random_prefix(),
        "SMTP_URL": mail_server.url,
        "PUBLIC_URL": "https://chat.example.org",
    }


@pytest.fixture(scope="module")
def instances(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    directory = tmp_path_factory.mktemp("reset")
    with (
        run_instances(env, directory) as servers,
        worker(env, directory / "worker.log"),
    ):
        yield servers


async def _login(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await http.post("/auth/token", data={"username": email, "password": password})


async def test_reset_ends_every_session_token_and_socket_on_both_instances(
    instances: list[ServerProcess], mail_server: MailServer, tmp_path: Path
) -> None:
    a, b = instances
    email = "forgetful@example.com"
    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=WAIT) as http_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=WAIT) as http_b,
    ):
        created = await http_a.post(
            "/users", json={"name": "Forgetful", "email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        # Two logins, one on each instance, each with a socket on its own instance.
        pairs = [(await _login(http, email, PASSWORD)).json() for http in (http_a, http_b)]
        members = [Member(user_id, "Forgetful", pair["access_token"]) for pair in pairs]
        sockets = [
            await Listener.open(a, members[0]),
            await Listener.open(b, members[1]),
        ]
        try:
            asked = await http_a.post("/auth/password-reset", json={"email": email})
            assert asked.status_code == 202
            await mail_server.wait_for(2, within=WAIT)  # verification, then reset
            [reset] = [m for m in mail_server.to(email) if m["Subject"] == "Reset your password"]

            confirmed = await http_b.post(
                "/auth/password-reset/confirm",
                json={"token": token_in(reset), "new_password": "the new password"},
            )
            assert confirmed.status_code == 204

            # Sockets on both instances close (1008), with no further action.
            assert await eventually(lambda: all(s.is_closed for s in sockets), within=WAIT)
            assert [socket.close_code for socket in sockets] == [1008, 1008]
            for http in (http_a, http_b):
                for member, pair in zip(members, pairs, strict=True):
                    me = await http.get("/me", headers=member.headers)
                    assert me.status_code == 401
                    refreshed = await http.post(
                        "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
                    )
                    assert refreshed.status_code == 401
                assert (await _login(http, email, PASSWORD)).status_code == 401
            assert (await _login(http_a, email, "the new password")).status_code == 200
        finally:
            await close_all(sockets)


async def test_deleting_one_session_closes_its_socket_on_the_other_instance_only(
    instances: list[ServerProcess],
) -> None:
    a, b = instances
    email = "two-devices@example.com"
    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=WAIT) as http_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=WAIT) as http_b,
    ):
        created = await http_a.post(
            "/users", json={"name": "Two", "email": email, "password": PASSWORD}
        )
        user_id = created.json()["id"]
        laptop = (await _login(http_a, email, PASSWORD)).json()
        phone = (await _login(http_b, email, PASSWORD)).json()
        laptop_member = Member(user_id, "Two", laptop["access_token"])
        phone_member = Member(user_id, "Two", phone["access_token"])
        on_a = await Listener.open(a, laptop_member)
        on_b = await Listener.open(b, phone_member)
        try:
            listed = await http_b.get("/auth/sessions", headers=phone_member.headers)
            [laptop_session] = [s for s in listed.json() if not s["current"]]
            # Ended through B; the laptop's socket lives on A.
            deleted = await http_b.delete(
                f"/auth/sessions/{laptop_session['id']}", headers=phone_member.headers
            )
            assert deleted.status_code == 204
            assert await eventually(lambda: on_a.is_closed, within=WAIT)
            assert on_a.close_code == 1008
            for http in (http_a, http_b):
                assert (await http.get("/me", headers=laptop_member.headers)).status_code == 401
                assert (await http.get("/me", headers=phone_member.headers)).status_code == 200
            # The phone's socket is untouched: it still answers.
            await on_b.send(PingFrame(type="ping"))
            await on_b.wait_for(PongFrame)
            assert not on_b.is_closed
        finally:
            await close_all([on_a, on_b])
