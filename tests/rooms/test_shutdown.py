"""The graceful-shutdown seam: `app.state.rooms.shutdown()` on a real uvicorn server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import uvicorn
from websockets.exceptions import InvalidStatus

from tests.conftest import make_settings
from tests.rooms.wsclient import connect, make_room, signup
from tests.support.server import ServerProcess, free_port
from townsquare.client import Connection
from townsquare.main import create_app
from townsquare.rooms.protocol import ByeFrame

pytestmark = pytest.mark.e2e


async def test_shutdown_sends_bye_and_closes_every_socket_with_1012(tmp_path: Path) -> None:
    settings = make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'shutdown.db'}")
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
                await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        # Only the URLs of a ServerProcess are used by `connect`.
        process = ServerProcess(None, base, f"ws://127.0.0.1:{port}", tmp_path / "log")  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=base) as http:
            ann, bob = await signup(http), await signup(http)
            room = await make_room(http, ann)
            clients = [await connect(process, ann), await connect(process, bob)]
            for client in clients:
                await client.join(room)
            await app.state.rooms.shutdown(reason="deploying", grace=5)
            for client in clients:
                code, frames = await client.closed()
                assert code == 1012
                assert frames[-1] == ByeFrame(reason="deploying")
            assert not app.state.rooms.connections
            with pytest.raises(InvalidStatus):
                await Connection.connect(base, token=ann.token)
    finally:
        server.should_exit = True
        await serving
