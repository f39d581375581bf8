"""A rejoin the server does not recover (`joined` with `recovered: false`, over
WS_REPLAY_MAX): the client pages the gap over REST, joins again with the newer
`since`, and the caller still sees every message once, in order.

The first test forces the condition against a real server through a proxy that
acts as a server with a replay cap (`FrameProxy(cap=...)`). The second runs the
same scenario against a real server configured with a small WS_REPLAY_MAX.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.client.conftest import new_room, sign_up
from tests.client.proxies import FrameProxy, TcpProxy
from tests.client.servers import SERVER_ENV, WAIT
from tests.support.server import ServerProcess, run_server
from townsquare.client import Api, Backoff, Client, MessageFrame

pytestmark = pytest.mark.e2e

CAP = 50
BEFORE, MISSED, AFTER = 5, 3 * CAP + 230, 5  # the gap spans more than one history page


async def _read(messages: AsyncIterator[MessageFrame], count: int) -> list[MessageFrame]:
    return [await asyncio.wait_for(anext(messages), WAIT) for _ in range(count)]


async def _scenario(
    server_url: str,
    ws_url: str,
    *,
    cut: Callable[[], None],
    restore: Callable[[], None],
) -> tuple[Client, list[MessageFrame]]:
    ann = await sign_up(server_url, "Ann")
    bob = await sign_up(server_url, "Bob")
    room = await new_room(server_url, ann)
    client = Client(
        server_url, ws_url=ws_url, tokens=ann.tokens, backoff=Backoff(first=0.05, cap=0.3)
    )
    received: list[MessageFrame] = []
    async with client, Api(server_url, token=bob.tokens.access_token) as bob_api:
        await client.join(room)
        messages = client.messages(room)
        for number in range(BEFORE):
            await bob_api.post_message(room, f"m{number}")
        received += await _read(messages, BEFORE)
        cut()  # the client is away while the gap is written
        for number in range(BEFORE, BEFORE + MISSED):
            await bob_api.post_message(room, f"m{number}")
        restore()
        received += await _read(messages, MISSED)
        for number in range(BEFORE + MISSED, BEFORE + MISSED + AFTER):
            await bob_api.post_message(room, f"m{number}")
        received += await _read(messages, AFTER)
    return client, received


def _assert_once_in_order(received: list[MessageFrame]) -> None:
    total = BEFORE + MISSED + AFTER
    assert [m.seq for m in received] == list(range(1, total + 1))
    assert [m.body for m in received] == [f"m{n}" for n in range(total)]


async def test_unrecovered_join_pages_history_then_joins_again(server: ServerProcess) -> None:
    proxy = FrameProxy(server.ws_url, cap=CAP)
    ws_url = await proxy.start()

    def cut() -> None:
        proxy.refusing = True
        proxy.black_hole()

    def restore() -> None:
        proxy.refusing = False

    try:
        client, received = await _scenario(server.base_url, ws_url, cut=cut, restore=restore)
    finally:
        await proxy.close()
    _assert_once_in_order(received)
    assert client.reconnects >= 1
    assert proxy.unrecovered == 1
    # The join after the paging asks only for what came after the gap.
    sinces = [join.get("since") for join in proxy.joins]
    assert sinces[-2] == BEFORE
    assert sinces[-1] is not None
    assert sinces[-1] >= BEFORE + MISSED


async def test_rejoin_over_ws_replay_max_recovers_through_history(tmp_path: Path) -> None:
    env = {
        **SERVER_ENV,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cap.db'}",
        "WS_REPLAY_MAX": str(CAP),
    }
    with run_server(env, tmp_path / "server.log") as server:
        proxy = TcpProxy(int(server.base_url.rsplit(":", 1)[1]))
        proxied = await proxy.start()

        def cut() -> None:
            proxy.refusing = True
            proxy.black_hole()

        def restore() -> None:
            proxy.refusing = False

        try:
            client, received = await _scenario(
                server.base_url, proxied.replace("http", "ws"), cut=cut, restore=restore
            )
        finally:
            await proxy.close()
    _assert_once_in_order(received)
    assert client.reconnects >= 1
