from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from tests.platform.conftest import CapturedLogs, serve_app


class InternalsLeak(RuntimeError):
    pass


async def test_unhandled_exception_returns_envelope_without_trace_and_logs_it(
    custom_app: Callable[..., FastAPI], json_logs: CapturedLogs
) -> None:
    app = custom_app()

    @app.get("/test/boom", response_model=None)
    async def boom() -> None:
        raise InternalsLeak("password=swordfish at db.internal:5432")

    async with serve_app(app, raise_app_exceptions=False) as client:
        response = await client.get("/test/boom", headers={"X-Request-ID": "boom-request-1"})

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "request_id": "boom-request-1"}
    assert response.headers["x-request-id"] == "boom-request-1"
    assert "swordfish" not in response.text
    assert "Traceback" not in response.text
    errors = [r for r in json_logs.records() if r["level"] == "ERROR" and "exception" in r]
    assert errors, json_logs.text
    assert errors[0]["request_id"] == "boom-request-1"
    assert "InternalsLeak" in errors[0]["exception"]
    access = json_logs.access()[-1]
    assert access["status"] == 500
    assert access["route"] == "/test/boom"


async def test_unknown_route_returns_404_envelope(
    custom_app: Callable[..., FastAPI],
) -> None:
    async with serve_app(custom_app()) as client:
        response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert set(response.json()) == {"detail", "request_id"}
