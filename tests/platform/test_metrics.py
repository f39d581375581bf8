from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import FastAPI

from tests.platform.conftest import serve_app


def sample(text: str, name: str, labels: str = "") -> float | None:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


async def test_metrics_label_requests_by_route_template_never_raw_path(
    custom_app: Callable[..., FastAPI],
) -> None:
    async with serve_app(custom_app()) as client:
        for user_id in (1, 2, 3):
            await client.get(f"/users/{user_id}")
        await client.get("/no/such/path/123")
        await client.get("/another/unknown")
        text = (await client.get("/metrics")).text
    route = '{method="GET",route="/users/{user_id}"}'
    assert sample(text, "townsquare_http_request_duration_seconds_count", route) == 3
    assert "/users/1" not in text
    assert "/no/such" not in text
    unmatched = '{method="GET",route="<unmatched>"}'
    assert sample(text, "townsquare_http_request_duration_seconds_count", unmatched) == 2
    assert sample(text, "townsquare_http_requests_in_flight") == 1  # the scrape itself
    assert (sample(text, "townsquare_process_resident_memory_bytes") or 0) > 0
    assert sample(text, "townsquare_worker_capacity") == 1000


async def test_metrics_count_server_errors_by_route(
    custom_app: Callable[..., FastAPI],
) -> None:
    app = custom_app()

    @app.get("/test/boom/{n}", response_model=None)
    async def boom(n: int) -> None:
        raise RuntimeError(n)

    async with serve_app(app, raise_app_exceptions=False) as client:
        for n in range(2):
            assert (await client.get(f"/test/boom/{n}")).status_code == 500
        await client.get("/health")
        text = (await client.get("/metrics")).text
    route = '{method="GET",route="/test/boom/{n}"}'
    assert sample(text, "townsquare_http_server_errors_total", route) == 2
    assert (
        sample(text, "townsquare_http_server_errors_total", '{method="GET",route="/health"}')
        is None
    )


async def test_metrics_with_junk_method_use_one_label(custom_app: Callable[..., FastAPI]) -> None:
    async with serve_app(custom_app()) as client:
        await client.request("BREW", "/health")
        text = (await client.get("/metrics")).text
    assert 'method="OTHER"' in text
    assert "BREW" not in text
