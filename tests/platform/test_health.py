from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tests.conftest import make_settings
from tests.platform.conftest import CapturedLogs, serve_app
from tests.support.server import free_port
from townsquare.main import create_app
from townsquare.platform.health import LIVENESS_ANSWERS, Readiness
from townsquare.platform.metrics import Metrics
from townsquare.platform.middleware.edge import EdgeMiddleware


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


async def test_liveness_is_answered_at_the_edge_with_headers_metrics_and_log_line(
    json_logs: CapturedLogs,
) -> None:
    """/health never reaches routing (nor the layers under the edge), yet its answer has
    what every response has: security headers, the request id, a metric and a log line;
    a method the edge does not answer goes on to the route."""
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(f"{scope['method']} {scope['path']}")
        await Response(status_code=405)(scope, receive, send)

    metrics = Metrics(worker_capacity=10, websocket_capacity=10)
    edge = EdgeMiddleware(
        app, metrics=metrics, hsts=False, websocket_routes={}, answers=LIVENESS_ANSWERS
    )
    transport = httpx.ASGITransport(app=edge)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        health = await client.get("/health", headers={"X-Request-ID": "probe-12345678"})
        live = await client.get("/live")
        head = await client.head("/health")
        # A browser's cross-origin request goes the whole way (through CORS).
        await client.get("/health", headers={"Origin": "https://elsewhere.example"})
    assert reached == ["HEAD /health", "GET /health"]
    assert health.status_code == live.status_code == 200
    assert health.json() == live.json() == {"status": "healthy"}
    assert health.headers["content-type"] == "application/json"
    assert health.headers["x-request-id"] == "probe-12345678"
    assert health.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in health.headers["content-security-policy"]
    assert head.status_code == 405
    lines = [(r["route"], r["status"], r["request_id"]) for r in json_logs.access()]
    assert lines[0] == ("/health", 200, "probe-12345678")
    assert [line[:2] for line in lines[1:3]] == [("/live", 200), ("<unmatched>", 405)]
    count = metrics.registry.get_sample_value(
        "townsquare_http_request_duration_seconds_count", {"method": "GET", "route": "/health"}
    )
    assert count == 1
