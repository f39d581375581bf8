from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Callable

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from uvicorn_worker import UvicornWorker
from websockets.exceptions import ConnectionClosed

from tests.platform.conftest import CapturedLogs
from tests.support.server import free_port
from townsquare.client import Connection
from townsquare.platform.server import GC_THRESHOLDS, DrainingServer, Worker, app_drain
from townsquare.platform.shutdown import Drain, ShutdownBudget
from townsquare.rooms.protocol import ByeFrame


async def test_drain_runs_every_callback_concurrently() -> None:
    drain = Drain()
    ran: list[str] = []
    both_started = asyncio.Barrier(2)

    def callback(name: str) -> object:
        async def run(within: float) -> None:
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

    async def stuck(within: float) -> None:
        await asyncio.Event().wait()

    async def fails(within: float) -> None:
        raise RuntimeError("cannot say bye")

    drain.register(stuck)
    drain.register(fails)
    async with asyncio.timeout(3):
        await drain.run(within=0.2)
    messages = [r["message"] for r in json_logs.records() if r["level"] == "ERROR"]
    assert any("still running" in m for m in messages)
    assert any("drain callback failed" in m for m in messages)


async def test_drain_hands_each_callback_its_share_of_the_one_budget() -> None:
    drain = Drain()
    given: list[float] = []

    async def callback(within: float) -> None:
        given.append(within)

    drain.register(callback)
    budget = ShutdownBudget.of(30)
    await drain.run(within=budget.drain)
    # A little less than the drain's share, so the callback's own timeout ends it.
    assert len(given) == 1
    assert 0.8 * budget.drain < given[0] < budget.drain


def test_app_drain_is_the_apps_state_drain() -> None:
    app = FastAPI()
    app.state.drain = Drain()
    assert app_drain(app) is app.state.drain
    assert app_drain(FastAPI()) is None


@pytest.mark.parametrize("graceful_timeout", [1, 5, 10, 30, 120])
def test_shutdown_budget_phases_fit_inside_the_graceful_timeout(graceful_timeout: int) -> None:
    budget = ShutdownBudget.of(graceful_timeout)
    assert budget.drain == pytest.approx(0.3 * graceful_timeout)
    assert budget.requests >= 1
    if graceful_timeout >= 5:
        # Drain, then requests, then at least two seconds to exit.
        assert budget.drain + budget.requests <= graceful_timeout - 2
    assert ShutdownBudget.of(30) == ShutdownBudget(9.0, 19)


def _code(function: Callable[..., object]) -> list[str]:
    return [line.strip() for line in inspect.getsource(function).splitlines() if line.strip()]


def test_uvicorn_internals_the_drain_relies_on_are_as_pinned() -> None:
    """The shutdown hook overrides uvicorn's `Server.shutdown` and uvicorn-worker's
    `_serve` (neither has a public hook before WebSockets are closed). An upgrade that
    changes them fails here, before it can silently skip the drain."""
    # Server.shutdown: stop listening, then close the connections (WebSockets get 1012),
    # then the lifespan: the drain must run before the second step.
    shutdown = _code(uvicorn.Server.shutdown)
    assert shutdown[0].startswith("async def shutdown(self, sockets")
    steps = [
        "for server in self.servers:",
        "connection.shutdown()",
        "await self.lifespan.shutdown()",
    ]
    positions = [shutdown.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "shutdown" in vars(DrainingServer)
    # uvicorn-worker's _serve, which Worker._serve repeats with DrainingServer.
    assert _code(UvicornWorker._serve) == [
        "async def _serve(self) -> None:",
        "self.config.app = self.wsgi",
        "server = Server(config=self.config)",
        "self._install_sigquit_handler()",
        "await server.serve(sockets=self.sockets)",
        "if not server.started:",
        "sys.exit(Arbiter.WORKER_BOOT_ERROR)",
    ]
    assert "_serve" in vars(Worker)


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

    async def say_bye(within: float) -> None:
        for websocket in list(sockets):
            await websocket.send_json({"type": "bye", "reason": "server restart"})
            await websocket.close(code=1012)

    app.state.drain.register(say_bye)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=3
    )
    server = DrainingServer(config, drain=app.state.drain, graceful_timeout=5)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
                await asyncio.sleep(0.02)
            connection = await Connection.connect(f"http://127.0.0.1:{port}")
            server.should_exit = True
            frame = await connection.recv()
            with pytest.raises(ConnectionClosed):
                await connection.recv()
            await serving
    finally:
        server.should_exit = True
        if not serving.done():
            serving.cancel()
    assert frame == ByeFrame(reason="server restart")
    assert connection.close_code == 1012


async def test_server_tunes_the_collector_while_it_runs_and_restores_it_at_shutdown() -> None:
    """The heap of the start (libraries, app, pools) is out of the collector's sight
    while the server runs, so a full collection does not walk it (a 100 ms pause under
    load), and full collections are rarer; a server run inside another process leaves
    neither behind."""
    app = FastAPI()
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None)
    server = DrainingServer(config, drain=None, graceful_timeout=5)
    before, thresholds = gc.get_freeze_count(), gc.get_threshold()
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
                await asyncio.sleep(0.02)
        frozen, running = gc.get_freeze_count(), gc.get_threshold()
        # This very app, built before the start, is among what a collection skips now.
        assert not any(obj is app for obj in gc.get_objects())
    finally:
        server.should_exit = True
        await serving
    assert before == 0
    assert frozen > 10_000
    assert running == GC_THRESHOLDS != thresholds
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
