"""An app served by a real uvicorn inside the test's event loop, so a test can talk
to it over real sockets and still look at its state (its pool, its metrics)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from tests.support.server import ServerProcess, free_port


@asynccontextmanager
async def serve_in_process(app: FastAPI) -> AsyncIterator[ServerProcess]:
    """Serve `app` on a free loopback port until the block ends (lifespan included).
    The `ServerProcess` it yields has no process and no log of its own."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if serving.done():
                    serving.result()
                    raise RuntimeError("uvicorn stopped during start-up")
                await asyncio.sleep(0.02)
        yield ServerProcess(
            process=None,  # type: ignore[arg-type]
            base_url=f"http://127.0.0.1:{port}",
            ws_url=f"ws://127.0.0.1:{port}",
            log_path=Path("/dev/null"),
        )
    finally:
        server.should_exit = True
        async with asyncio.timeout(30):
            await serving
