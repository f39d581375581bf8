"""A `send` whose connection breaks is written again with the same `client_id`,
and the message is stored once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.client.conftest import new_room, sign_up
from tests.client.proxies import FrameProxy, TcpProxy
from tests.client.servers import WAIT
from tests.support.brokers import eventually
from tests.support.server import ServerProcess
from townsquare.client import Api, Backoff, Client

pytestmark = pytest.mark.e2e

FAST = Backoff(first=0.05, cap=0.5)


async def _stored(api: Api, room: str, client_id: str) -> int:
    return sum(
        1 for message in await api.history(room, limit=200) if message.client_id == client_id
    )


async def _is_stored(api: Api, room: str, client_id: str) -> bool:
    return await _stored(api, room, client_id) > 0


@pytest.fixture
async def frames(server: ServerProcess) -> AsyncIterator[FrameProxy]:
    # cap=0: after a reconnect nothing is replayed, so only a second write of the
    # send (deduplicated by the server) or history can confirm it.
    proxy = FrameProxy(server.ws_url, cap=0)
    yield proxy
    await proxy.close()


async def test_send_stored_before_the_break_is_stored_once_after_its_retry(
    server: ServerProcess, frames: FrameProxy
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    room = await new_room(server.base_url, ann)
    url = await frames.start()
    async with (
        Client(
            server.base_url, ws_url=url, tokens=ann.tokens, backoff=FAST, ack_timeout=5.0
        ) as client,
        Api(server.base_url, token=ann.tokens.access_token) as api,
    ):
        await client.join(room)
        # From here the server's frames are lost on the way (its confirmation too),
        # while the client's still arrive.
        frames.black_hole(up=False)
        sending = asyncio.create_task(client.send(room, "exactly once", client_id="ann-1"))
        assert await eventually(lambda: _is_stored(api, room, "ann-1"), WAIT) is True
        message = await asyncio.wait_for(sending, WAIT)

    assert message.client_id == "ann-1"
    assert [f["client_id"] for f in frames.sends] == ["ann-1", "ann-1"]  # written twice
    async with Api(server.base_url, token=ann.tokens.access_token) as api:
        assert await _stored(api, room, "ann-1") == 1
        assert (await api.room(room)).last_seq == 1 == message.seq


async def test_send_lost_on_the_way_is_written_again_after_reconnect(
    server: ServerProcess,
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    bob = await sign_up(server.base_url, "Bob")
    room = await new_room(server.base_url, ann)
    proxy = TcpProxy(int(server.base_url.rsplit(":", 1)[1]))
    url = await proxy.start()
    try:
        async with (
            # No confirmation timeout within the test's bound: only the reconnect
            # can make the client write the send again.
            Client(url, tokens=ann.tokens, backoff=FAST, ack_timeout=3 * WAIT) as client,
            Client(server.base_url, tokens=bob.tokens) as watcher,
        ):
            await client.join(room)
            await watcher.join(room)
            # The client's frames vanish (the send among them); the server, hearing
            # nothing, closes the connection after its heartbeat timeout.
            proxy.black_hole(up=True, down=False)
            message = await asyncio.wait_for(client.send(room, "lost once"), WAIT)
            seen = await asyncio.wait_for(anext(watcher.messages(room)), WAIT)
            assert client.reconnects >= 1
        assert seen.id == message.id
        async with Api(server.base_url, token=ann.tokens.access_token) as api:
            assert (await api.room(room)).last_seq == 1
    finally:
        await proxy.close()
