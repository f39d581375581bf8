"""Tokens: one refresh in flight at a time, renewal over the open connection before
expiry, a refused token refreshed on reconnect, and a clear failure when no new
token can be had."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.client.conftest import mint_access_token, new_room, sign_up
from tests.client.servers import AUTH_TIMEOUT, WAIT
from tests.support.server import ServerProcess
from townsquare.client import (
    Api,
    AuthenticationFailed,
    Client,
    Connected,
    Credentials,
    Disconnected,
    ErrorFrame,
    Event,
)

pytestmark = pytest.mark.e2e


async def _drain(client: Client, into: list[Event]) -> None:
    async for event in client.events():
        into.append(event)


async def _read_all(client: Client, room: str) -> None:
    async for _ in client.messages(room):
        pass


async def test_concurrent_refreshes_make_one_request(server: ServerProcess) -> None:
    ann = await sign_up(server.base_url, "Ann")
    credentials = Credentials.from_pair(ann.tokens)
    async with Api(server.base_url, credentials=credentials) as api:
        seen = credentials.version
        tokens = await asyncio.gather(*(credentials.refresh(seen) for _ in range(10)))
        assert len(set(tokens)) == 1
        assert tokens[0] != ann.tokens.access_token
        assert credentials.refreshes == 1
        # Had a second refresh gone out, it would have presented the spent refresh
        # token and revoked the whole login: the rotated one still works.
        await credentials.refresh(credentials.version)
        assert (await api.me()).id == ann.id


async def test_token_is_renewed_over_the_open_connection_before_it_expires(
    server: ServerProcess,
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    room = await new_room(server.base_url, ann)
    short = mint_access_token(ann, lifetime=3)
    events: list[Event] = []
    async with Client(
        server.base_url, token=short, refresh_token=ann.tokens.refresh_token
    ) as client:
        drain = asyncio.create_task(_drain(client, events))
        first = client.welcome
        expires_at = client.credentials.expires_at
        assert expires_at is not None
        await client.join(room)
        # Past the first token's expiry and the server's grace for a `refresh`: a
        # connection that did not renew in time would have been told and closed.
        await asyncio.sleep(max(0.0, expires_at + AUTH_TIMEOUT + 1.5 - time.time()))
        message = await asyncio.wait_for(client.send(room, "still here"), WAIT)
        assert client.welcome is first
        assert client.reconnects == 0
        assert client.credentials.refreshes == 1
        drain.cancel()
    assert message.body == "still here"
    assert not [e for e in events if isinstance(e, ErrorFrame | Disconnected)], events


async def test_refused_token_is_refreshed_once_and_the_connection_made(
    server: ServerProcess,
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    expired = mint_access_token(ann, lifetime=30, issued_ago=120)
    async with Client(
        server.base_url, token=expired, refresh_token=ann.tokens.refresh_token
    ) as client:
        assert client.user is not None
        assert client.user.id == ann.id
        assert client.credentials.refreshes == 1


async def test_refused_token_without_a_way_to_refresh_fails_clearly(
    server: ServerProcess,
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    expired = mint_access_token(ann, lifetime=30, issued_ago=120)
    with pytest.raises(AuthenticationFailed, match="refused the token"):
        async with Client(server.base_url, token=expired):
            pass


async def test_ended_session_stops_the_client_with_authentication_failed(
    server: ServerProcess,
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    room = await new_room(server.base_url, ann)
    events: list[Event] = []
    async with Client(server.base_url, tokens=ann.tokens) as client:
        drain = asyncio.create_task(_drain(client, events))
        await client.join(room)
        async with Api(server.base_url, token=ann.tokens.access_token) as api:
            # Every token of the account dies, the refresh tokens too.
            await api.logout_all()
        with pytest.raises(AuthenticationFailed):
            await asyncio.wait_for(_read_all(client, room), WAIT)
        with pytest.raises(AuthenticationFailed):
            await client.send(room, "too late")
        await asyncio.wait_for(drain, WAIT)  # the events end too
    assert isinstance(events[0], Connected)
    last = events[-1]
    assert isinstance(last, Disconnected)
    assert last.final
