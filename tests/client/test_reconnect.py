"""Reconnects: the server is killed (SIGKILL) and started again, or restarted
gracefully (SIGTERM: `bye`, 1012), while clients keep sending and reading."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.client.conftest import new_room, sign_up
from tests.client.servers import WAIT, RestartableServer
from townsquare.auth.schemas import TokenPair
from townsquare.client import Api, Backoff, Client, MessageFrame

pytestmark = pytest.mark.e2e

TOTAL = 1000
KILLS = 3


def _client(url: str, tokens: TokenPair) -> Client:
    return Client(
        url, tokens=tokens, max_frames_per_second=1000.0, backoff=Backoff(first=0.05, cap=0.5)
    )


async def _collect(client: Client, room: str, count: int) -> list[MessageFrame]:
    got: list[MessageFrame] = []
    async for message in client.messages(room):
        got.append(message)
        if len(got) == count:
            break
    return got


async def test_messages_arrive_once_in_order_across_server_kills(tmp_path: Path) -> None:
    server = RestartableServer(tmp_path)
    await server.start()
    try:
        sender_user = await sign_up(server.base_url, "Sender")
        reader_user = await sign_up(server.base_url, "Reader")
        room = await new_room(server.base_url, sender_user)
        sender = _client(server.base_url, sender_user.tokens)
        reader = _client(server.base_url, reader_user.tokens)
        async with sender, reader:
            await reader.join(room)
            await sender.join(room)
            # The killer strikes when the sender has got so far: progress, not time.
            milestones = [asyncio.Event() for _ in range(KILLS)]
            step = TOTAL // (KILLS + 1)

            async def send_all() -> None:
                for number in range(TOTAL):
                    await sender.send(room, f"m{number}")
                    if (number + 1) % step == 0 and (number + 1) // step <= KILLS:
                        milestones[(number + 1) // step - 1].set()

            async def kill_and_restart() -> None:
                for milestone in milestones:
                    await milestone.wait()
                    await server.kill()
                    await server.start()

            async with asyncio.timeout(WAIT * 8):  # server starts are slow on a busy machine
                received, _, _ = await asyncio.gather(
                    _collect(reader, room, TOTAL), send_all(), kill_and_restart()
                )
            assert reader.reconnects >= KILLS
            assert sender.reconnects >= KILLS

        assert [m.seq for m in received] == list(range(1, TOTAL + 1))
        assert [m.body for m in received] == [f"m{n}" for n in range(TOTAL)]
        # Stored once each: the room holds exactly the 1,000 messages.
        async with Api(server.base_url, token=reader_user.tokens.access_token) as api:
            assert (await api.room(room)).last_seq == TOTAL
    finally:
        await server.stop()
