"""`Connection`, the raw typed socket for tools and protocol tests."""

from __future__ import annotations

import pytest

from tests.client.conftest import new_room, sign_up
from tests.support.server import ServerProcess, free_port
from townsquare.client import Client, ConnectFailed, Connection, Rejected
from townsquare.rooms.protocol import (
    ErrorCode,
    JoinedFrame,
    JoinFrame,
    MessageFrame,
    SendFrame,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("in_frame", [False, True], ids=["header", "auth-frame"])
async def test_open_authenticates_and_frames_are_typed(
    server: ServerProcess, in_frame: bool
) -> None:
    ann = await sign_up(server.base_url, "Ann")
    room = await new_room(server.base_url, ann)
    connection = await Connection.open(server.base_url, ann.tokens.access_token, in_frame=in_frame)
    try:
        assert connection.welcome is not None
        assert connection.welcome.user.id == ann.id
        await connection.send(JoinFrame(type="join", room=room, since=0))
        joined = await connection.expect(JoinedFrame, room=room)
        assert joined.seq == 0
        await connection.send(SendFrame(type="send", room=room, body="hi", client_id="c1"))
        echo = await connection.expect(MessageFrame, client_id="c1")
        assert (echo.seq, echo.body) == (1, "hi")
        await connection.send("{not json")
        assert (await connection.recv_json())["code"] == ErrorCode.INVALID_JSON.value
    finally:
        await connection.close()
    assert connection.close_code == 1000


async def test_a_refused_token_raises_rejected_with_the_servers_reason(
    server: ServerProcess,
) -> None:
    with pytest.raises(Rejected) as refused:
        await Connection.open(server.base_url, "not-a-token")
    assert refused.value.code == 1008
    assert refused.value.error is not None
    assert refused.value.error.code is ErrorCode.INVALID_TOKEN


async def test_client_without_a_server_gives_up_after_the_connect_timeout() -> None:
    with pytest.raises(ConnectFailed):
        async with Client(f"http://127.0.0.1:{free_port()}", token="t", connect_timeout=1):
            pass
