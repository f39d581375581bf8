"""The HTTP side's own budget: requests beyond it get 503, the probes never do."""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import Receive, Scope, Send

from townsquare.platform.middleware.capacity import CapacityMiddleware


async def test_requests_over_capacity_get_503_while_probes_are_served() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            entered.set()
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = CapacityMiddleware(app, limit=1, exempt_paths={"/live"})
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        slow = asyncio.create_task(client.get("/slow"))
        await entered.wait()
        refused = await client.get("/other")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["detail"] == "Server busy, retry shortly"
        assert (await client.get("/live")).status_code == 200
        release.set()
        assert (await slow).status_code == 200
        assert (await client.get("/other")).status_code == 200
