from __future__ import annotations

import asyncio

import pytest
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from tests.platform.conftest import CapturedLogs
from tests.support.server import free_port
from townsquare.platform.server import DrainingServer, _find_drain, uvicorn_timeout
from townsquare.platform.shutdown import Drain


async def test_drain_runs_every_callback_concurrently() -> None:
    drain = Drain()
    ran: list[str] = []
    both_started = asyncio.Barrier(2)

    def callback(name: str) -> object:
        async def run() -> None:
            await both_started.wait()  # deadlocks unless run concurrently
            ran.append(name)

        return run

    drain.register(callback("rooms"))  # type: ignore[arg-type]
    drain.register(callback("other"))  # type: ignore[arg-type]
    await drain.run(within=2)
    assert sorted(ran) == ["other", "rooms"]


async def test_drain_with_stuck_or_failing_callback_returns_in_time_and_logs(
    json_logs: CapturedLogs,
) -> None:
    drain = Drain()

    async def stuck() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise RuntimeError("cannot say bye")

    drain.register(stuck)
    drain.register(fails)
    async with asyncio.timeout(3):
        await drain.run(within=0.2)
    messages = [r["message"] for r in json_logs.records() if r["level"] == "ERROR"]
    assert any("still running" in m for m in messages)
    assert any("drain callback failed" in m for m in messages)


def test_find_drain_looks_through_wrapping_middleware() -> None:
    from fastapi import FastAPI
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    app = FastAPI()
    app.state.drain = Drain()
    assert _find_drain(ProxyHeadersMiddleware(app)) is app.state.drain  # type: ignore[arg-type]
    assert _find_drain(FastAPI()) is None


def test_uvicorn_timeout_leaves_room_inside_graceful_timeout() -> None:
    assert uvicorn_timeout(30) == 28
    assert uvicorn_timeout(1) == 1


async def test_serve_on_shutdown_drains_before_uvicorn_closes_websockets() -> None:
    """`townsquare serve`'s server: a drain callback's `bye` reaches the client, then 1012.

    A bare app with one socket route and one drain callback, so this checks the server's
    shutdown order alone (the rooms' own drain is tested under gunicorn and in rooms/).
    """
    app = FastAPI()
    app.state.drain = Drain()
    sockets: set[WebSocket] = set()

    @app.websocket("/ws")
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        sockets.add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            sockets.discard(websocket)

    async def say_bye() -> None:
        for websocket in list(sockets):
            await websocket.send_json({"type": "bye", "reason": "server restart"})
            await websocket.close(code=1012)

    app.state.drain.register(say_bye)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=3
    )
    server = DrainingServer(config, graceful_timeout=5)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
                await asyncio.sleep(0.02)
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
                server.should_exit = True
                frame = await ws.recv()
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
            await serving
    finally:
        server.should_exit = True
        if not serving.done():
            serving.cancel()
    assert frame == '{"type":"bye","reason":"server restart"}'
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
