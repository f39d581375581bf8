"""An API key on a real server's /ws is refused (1008) and told why, as on every
route but POST /rooms/{name}/messages."""

from __future__ import annotations

import pytest

from tests.rooms.conftest import server  # noqa: F401 (the fixture)
from tests.rooms.wsclient import Socket, connect
from tests.support.server import ServerProcess
from townsquare.rooms.protocol import AuthFrame, ErrorFrame

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("how", ["header", "auth frame"])
async def test_api_key_on_websocket_is_refused_with_the_reason(
    server: ServerProcess,  # noqa: F811
    how: str,
) -> None:
    key = "tsk_" + "k" * 43
    if how == "header":
        client = await Socket.connect(server.base_url, token=key)
        assert isinstance(client, Socket)
    else:
        client = await connect(server)
        await client.send(AuthFrame(type="auth", token=key))
    code, frames = await client.closed()
    assert code == 1008
    [error] = [frame for frame in frames if isinstance(frame, ErrorFrame)]
    assert error.code == "invalid_token"
    assert error.detail == "API keys are accepted only by POST /rooms/{name}/messages"
