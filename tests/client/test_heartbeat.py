"""A dead path to the server (no close frame, no FIN) is noticed within the
heartbeat timeout, and the client recovers what was sent meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.client.conftest import new_room, sign_up
from tests.client.proxies import TcpProxy
from tests.client.servers import HEARTBEAT_TIMEOUT, WAIT
from tests.support.server import ServerProcess
from townsquare.client import Api, Backoff, Client, Connected, Disconnected, Event

pytestmark = pytest.mark.e2e

# Detection happens at the first heartbeat tick after `timeout` of silence, and the
# last frame heard may predate the cut by up to half an interval: a second of slack
# covers both and a busy machine.
SLACK = 1.0


@pytest.fixture
async def proxy(server: ServerProcess) -> AsyncIterator[TcpProxy]:
    tcp = TcpProxy(int(server.base_url.rsplit(":", 1)[1]))
    yield tcp
    await tcp.close()


async def _watch(client: Client, into: asyncio.Queue[tuple[float, Event]]) -> None:
    async for event in client.events():
        if isinstance(event, Connected | Disconnected):
            await into.put((time.monotonic(), event))


async def test_black_holed_connection_is_noticed_within_heartbeat_and_recovered(
    server: ServerProcess, proxy: TcpProxy
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    bob = await sign_up(server.base_url, "Bob")
    room = await new_room(server.base_url, ann)
    proxied = await proxy.start()
    events: asyncio.Queue[tuple[float, Event]] = asyncio.Queue()
    async with (
        Client(proxied, tokens=ann.tokens, backoff=Backoff(first=0.05, cap=0.5)) as client,
        Api(server.base_url, token=bob.tokens.access_token) as bob_api,
    ):
        watcher = asyncio.create_task(_watch(client, events))
        _, first = await asyncio.wait_for(events.get(), WAIT)
        assert isinstance(first, Connected)
        await client.join(room)
        messages = client.messages(room)
        await bob_api.post_message(room, "before")
        assert (await asyncio.wait_for(anext(messages), WAIT)).body == "before"

        proxy.black_hole()
        cut = time.monotonic()
        for body in ("during-1", "during-2"):
            await bob_api.post_message(room, body)

        noticed, gone = await asyncio.wait_for(events.get(), HEARTBEAT_TIMEOUT + SLACK)
        assert isinstance(gone, Disconnected)
        assert gone.code is None
        assert "heartbeat" in gone.reason
        assert noticed - cut <= HEARTBEAT_TIMEOUT + SLACK
        _, back = await asyncio.wait_for(events.get(), WAIT)
        assert isinstance(back, Connected)
        assert back.reconnect

        await bob_api.post_message(room, "after")
        bodies = [(await asyncio.wait_for(anext(messages), WAIT)).body for _ in range(3)]
        assert bodies == ["during-1", "during-2", "after"]
        assert proxy.accepted == 2
        watcher.cancel()
