"""The client's behaviour on a real server: rooms that are not there, removal from a
room (`left`), a graceful restart (1012), a server's frame rate, and what importing
the client costs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import new_room, sign_up
from tests.client.proxies import FrameProxy
from tests.client.servers import WAIT, RestartableServer
from tests.support.server import ServerProcess
from townsquare.client import (
    Api,
    Backoff,
    Client,
    Connected,
    Disconnected,
    ErrorFrame,
    Event,
    LeftFrame,
    NotJoined,
    RoomLeft,
    RoomNotFound,
)
from townsquare.rooms.protocol import ErrorCode, LeftReason

FAST = Backoff(first=0.05, cap=0.5)


async def _collect(client: Client, into: asyncio.Queue[Event]) -> None:
    async for event in client.events():
        await into.put(event)


async def _next_of(queue: asyncio.Queue[Event], kind: type[Event]) -> Event:
    async with asyncio.timeout(WAIT):
        while not isinstance(event := await queue.get(), kind):
            pass
    return event


def test_importing_the_client_loads_no_server_framework() -> None:
    code = (
        "import sys, townsquare.client\n"
        "heavy = ('fastapi', 'starlette', 'sqlalchemy', 'alembic', 'uvicorn', 'redis')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


@pytest.mark.e2e
async def test_joining_a_missing_or_hidden_room_raises_room_not_found(
    server: ServerProcess,
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    bob = await sign_up(server.base_url, "Bob")
    hidden = await new_room(server.base_url, bob, private=True)
    async with Client(server.base_url, tokens=ann.tokens) as client:
        for room in ("no-such-room", hidden):
            with pytest.raises(RoomNotFound):
                await client.join(room)
        assert client.rooms == []
        with pytest.raises(NotJoined):
            await client.send(hidden, "hello?")


@pytest.mark.e2e
async def test_left_ends_the_room_and_it_is_not_rejoined(server: ServerProcess) -> None:
    ann = await sign_up(server.base_url, "Ann")
    bob = await sign_up(server.base_url, "Bob")
    kept, removed = await new_room(server.base_url, bob), await new_room(server.base_url, bob)
    proxy = FrameProxy(server.ws_url)
    ws_url = await proxy.start()
    events: asyncio.Queue[Event] = asyncio.Queue()
    try:
        async with (
            Client(server.base_url, ws_url=ws_url, tokens=ann.tokens, backoff=FAST) as client,
            Api(server.base_url, token=bob.tokens.access_token) as bob_api,
        ):
            watcher = asyncio.create_task(_collect(client, events))
            await client.join(kept)
            await client.join(removed)
            await bob_api.post_message(removed, "before")
            messages = client.messages(removed)
            assert (await asyncio.wait_for(anext(messages), WAIT)).body == "before"

            # What the server sends when the user is removed (room engine v2).
            await proxy.inject({"type": "left", "room": removed, "reason": "removed"})
            left = await _next_of(events, LeftFrame)
            assert isinstance(left, LeftFrame)
            assert left.reason is LeftReason.REMOVED
            await bob_api.post_message(removed, "after")  # still reaches the socket
            with pytest.raises(RoomLeft) as ended:
                await asyncio.wait_for(anext(messages), WAIT)
            assert ended.value.reason is LeftReason.REMOVED
            with pytest.raises(RoomLeft):
                await client.send(removed, "hello?")
            assert client.rooms == [kept]

            # After a reconnect only the other room is joined again.
            joins = len(proxy.joins)
            proxy.black_hole()
            await _next_of(events, Connected)
            await bob_api.post_message(kept, "kept")
            assert (await asyncio.wait_for(anext(client.messages(kept)), WAIT)).body == "kept"
            assert [join["room"] for join in proxy.joins[joins:]] == [kept]
            watcher.cancel()
    finally:
        await proxy.close()


@pytest.mark.e2e
async def test_graceful_restart_is_a_reconnect_not_an_error(tmp_path: Path) -> None:
    server = RestartableServer(tmp_path)
    await server.start()
    events: asyncio.Queue[Event] = asyncio.Queue()
    try:
        ann = await sign_up(server.base_url, "Ann")
        room = await new_room(server.base_url, ann)
        async with Client(server.base_url, tokens=ann.tokens, backoff=FAST) as client:
            watcher = asyncio.create_task(_collect(client, events))
            await client.join(room)
            await server.stop()  # SIGTERM: bye, then 1012
            gone = await _next_of(events, Disconnected)
            assert isinstance(gone, Disconnected)
            assert gone.code == 1012
            assert not gone.final
            await server.start()
            back = await _next_of(events, Connected)
            assert isinstance(back, Connected)
            sent = await asyncio.wait_for(client.send(room, "back again"), WAIT)
            received = await asyncio.wait_for(anext(client.messages(room)), WAIT)
            assert received.id == sent.id
            watcher.cancel()
    finally:
        await server.stop()


@pytest.mark.e2e
async def test_client_faster_than_the_servers_frame_rate_still_stores_each_send_once(
    tmp_path: Path,
) -> None:
    server = RestartableServer(tmp_path, WS_MESSAGES_PER_SECOND="10")
    await server.start()
    events: asyncio.Queue[Event] = asyncio.Queue()
    try:
        ann = await sign_up(server.base_url, "Ann")
        room = await new_room(server.base_url, ann)
        # Configured three times over the server's rate: the server refuses frames
        # (`rate_limited`) and may close the socket; the client slows down and
        # writes the unconfirmed sends again.
        async with Client(
            server.base_url, tokens=ann.tokens, max_frames_per_second=30, backoff=FAST
        ) as client:
            watcher = asyncio.create_task(_collect(client, events))
            await client.join(room)
            sent = await asyncio.wait_for(
                asyncio.gather(*(client.send(room, f"m{n}") for n in range(40))), WAIT * 2
            )
            limited = await _next_of(events, ErrorFrame)
            assert isinstance(limited, ErrorFrame)
            assert limited.code is ErrorCode.RATE_LIMITED
            watcher.cancel()
        assert sorted(m.seq for m in sent) == list(range(1, 41))
        async with Api(server.base_url, token=ann.tokens.access_token) as api:
            assert (await api.room(room)).last_seq == 40
    finally:
        await server.stop()
