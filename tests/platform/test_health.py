from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.platform.conftest import serve_app
from tests.support.server import free_port
from townsquare.main import create_app
from townsquare.platform.health import Readiness


async def test_probes_when_database_answers_return_200(client: httpx.AsyncClient) -> None:
    health, live, response = [await client.get(p) for p in ("/health", "/live", "/ready")]
    assert health.json() == {"status": "healthy"}
    assert live.json() == {"status": "healthy"}
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "broker": "ok"},
    }


async def test_ready_with_hung_dependency_returns_503_naming_it_within_timeout(
    custom_app: Callable[..., FastAPI],
) -> None:
    app = custom_app(readiness_timeout_seconds=0.2)

    async def hangs() -> None:
        await asyncio.Event().wait()

    async with serve_app(app) as client:
        app.state.readiness.add("broker", hangs)
        async with asyncio.timeout(5):  # a hang fails the test instead of stalling it
            response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "checks": {"database": "ok", "schema": "ok", "broker": "timeout"},
    }


async def test_ready_with_database_unreachable_returns_503() -> None:
    # Nothing listens on this port: the real database check fails fast.
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app(make_settings(database_url=url))
    async with serve_app(app) as client:
        response = await client.get("/ready")
        health = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert response.json()["checks"]["database"].startswith("failed: ")
    assert health.status_code == 200  # liveness does not depend on the database


async def test_readiness_runs_checks_concurrently() -> None:
    readiness = Readiness(timeout=0.3)
    started: list[str] = []

    def check(name: str) -> Callable[[], asyncio.Future[None]]:
        async def run() -> None:
            started.append(name)
            await asyncio.sleep(10)

        return lambda: asyncio.ensure_future(run())

    for name in ("a", "b", "c"):
        readiness.add(name, check(name))
    async with asyncio.timeout(2):  # sequential checks would take 0.9 s, still under 2
        report = await readiness.report()
    assert sorted(started) == ["a", "b", "c"]
    assert report.checks == {"a": "timeout", "b": "timeout", "c": "timeout"}
