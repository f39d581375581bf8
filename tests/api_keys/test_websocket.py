"""An API key on a real server's /ws is refused (1008) and told why, as on every
route but POST /rooms/{name}/messages."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect

from tests.rooms.conftest import server  # noqa: F401 (the fixture)
from tests.rooms.wsclient import Client
from tests.support.server import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("how", ["header", "auth frame"])
async def test_api_key_on_websocket_is_refused_with_the_reason(
    server: ServerProcess,  # noqa: F811
    how: str,
) -> None:
    key = "tsk_" + "k" * 43
    headers = {"Authorization": f"Bearer {key}"} if how == "header" else None
    ws = await connect(f"{server.ws_url}/ws", additional_headers=headers, open_timeout=10)
    client = Client(ws)
    if how == "auth frame":
        await client.send(type="auth", token=key)
    code, frames = await client.closed()
    assert code == 1008
    [error] = [frame for frame in frames if frame["type"] == "error"]
    assert error["code"] == "invalid_token"
    assert error["detail"] == "API keys are accepted only by POST /rooms/{name}/messages"
