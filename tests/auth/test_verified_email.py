"""REQUIRE_VERIFIED_EMAIL=true on a real server: an unverified account may log in but
neither post (403) nor join (`error` email_not_verified) until it follows the link
of its verification mail; then both work. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.rooms.conftest import BASE_ENV, _empty
from tests.rooms.wsclient import Client, Member, make_room
from tests.support.server import ServerProcess, run_server
from tests.support.smtp import MailServer, token_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def module_mail_server() -> AsyncIterator[MailServer]:
    server = MailServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def strict_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_mail_server: MailServer,
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("verified")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'e2e.db'}"
    else:
        url = str(request.getfixturevalue("postgresql_database_url"))
    env = {
        **BASE_ENV,
        "DATABASE_URL": url,
        "REQUIRE_VERIFIED_EMAIL": "true",
        "SMTP_URL": module_mail_server.url,
    }
    with run_server(env, tmp / "server.log") as server:
        yield server
    if request.param != "sqlite":
        asyncio.run(_empty(url))


async def _signup(http: httpx.AsyncClient, email: str) -> Member:
    created = await http.post(
        "/users", json={"name": "Una", "email": email, "password": "long enough pw"}
    )
    assert created.status_code == 201, created.text
    token = await http.post("/auth/token", data={"username": email, "password": "long enough pw"})
    assert token.status_code == 200, token.text  # unverified accounts may log in
    return Member(created.json()["id"], "Una", token.json()["access_token"])


async def test_unverified_account_cannot_post_or_join_until_it_follows_the_mailed_link(
    strict_server: ServerProcess, module_mail_server: MailServer
) -> None:
    email = f"una-{strict_server.base_url.rsplit(':', 1)[1]}@example.com"
    async with httpx.AsyncClient(base_url=strict_server.base_url, timeout=10) as http:
        una = await _signup(http, email)
        room = await make_room(http, una)  # creating a room is not posting into it

        posted = await http.post(
            f"/rooms/{room}/messages", json={"body": "hi"}, headers=una.headers
        )
        assert posted.status_code == 403
        assert posted.json()["detail"].startswith("Verify your email address first")

        client = await Client.open(strict_server, una)
        try:
            await client.send(type="join", room=room, ref="j1")
            error = await client.expect("error")
            assert error["code"] == "email_not_verified"
            assert error["ref"] == "j1"
        finally:
            await client.ws.close()

        await module_mail_server.wait_for(1)
        [mail] = module_mail_server.to(email)
        verified = await http.post("/auth/verify-email", json={"token": token_in(mail)})
        assert verified.status_code == 204
        assert (await http.get("/me", headers=una.headers)).json()["email_verified"] is True

        posted = await http.post(
            f"/rooms/{room}/messages", json={"body": "hi"}, headers=una.headers
        )
        assert posted.status_code == 201, posted.text
        client = await Client.open(strict_server, una)
        try:
            await client.send(type="join", room=room)
            joined = await client.expect("joined")
            assert joined["seq"] == 1
        finally:
            await client.ws.close()
