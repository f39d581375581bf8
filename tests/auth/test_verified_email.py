"""REQUIRE_VERIFIED_EMAIL=true on a real server: an unverified account may log in but
neither post (403) nor join (`error` email_not_verified) until it follows the link
of its verification mail; then both work. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.rooms.conftest import BASE_ENV, _empty
from tests.rooms.wsclient import PASSWORD, Member, connect, make_room
from tests.support.server import ServerProcess, run_server
from tests.support.smtp import MailServer, token_in
from townsquare.client import Api, ApiError
from townsquare.rooms.protocol import ErrorFrame, JoinedFrame, JoinFrame

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


async def _signup(api: Api, email: str) -> Member:
    created = await api.signup(name="Una", email=email, password=PASSWORD)
    tokens = await api.login(email, PASSWORD)  # unverified accounts may log in
    return Member(created.id, "Una", tokens.access_token, tokens.refresh_token)


async def test_unverified_account_cannot_post_or_join_until_it_follows_the_mailed_link(
    strict_server: ServerProcess, module_mail_server: MailServer
) -> None:
    email = f"una-{strict_server.base_url.rsplit(':', 1)[1]}@example.com"
    async with (
        httpx.AsyncClient(base_url=strict_server.base_url, timeout=10) as http,
        Api(strict_server.base_url) as api,
    ):
        una = await _signup(api, email)
        room = await make_room(http, una)  # creating a room is not posting into it

        with pytest.raises(ApiError) as refused:
            await api.post_message(room, "hi")
        assert refused.value.status == 403
        assert str(refused.value.detail).startswith("Verify your email address first")

        client = await connect(strict_server, una)
        try:
            await client.send(JoinFrame(type="join", room=room, ref="j1"))
            error = await client.expect(ErrorFrame)
            assert error.code == "email_not_verified"
            assert error.ref == "j1"
        finally:
            await client.close()

        await module_mail_server.wait_for(1)
        [mail] = module_mail_server.to(email)
        verified = await http.post("/auth/verify-email", json={"token": token_in(mail)})
        assert verified.status_code == 204
        assert (await api.me()).email_verified is True

        posted = await http.post(
            f"/rooms/{room}/messages", json={"body": "hi"}, headers=una.headers
        )
        assert posted.status_code == 201, posted.text
        client = await connect(strict_server, una)
        try:
            await client.send(JoinFrame(type="join", room=room))
            joined = await client.expect(JoinedFrame)
            assert joined.seq == 1
        finally:
            await client.close()
