"""The drain seam: work that must happen on SIGTERM before the server closes connections.

uvicorn closes open WebSockets itself (code 1012, no message) as soon as it starts to
shut down, before the lifespan's shutdown runs; a lifespan hook is too late to tell a
client `bye`. So the server (`townsquare.platform.server`) stops accepting, then awaits
`Drain.run()`, and only then lets uvicorn close connections and run the lifespan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

DrainCallback = Callable[[], Awaitable[None]]


class Drain:
    def __init__(self) -> None:
        self.callbacks: list[DrainCallback] = []

    def register(self, callback: DrainCallback) -> None:
        """Run `callback` on SIGTERM, e.g. a connection manager's "say bye, close 1012"."""
        self.callbacks.append(callback)

    async def run(self, within: float) -> None:
        """Run every callback concurrently, for at most `within` seconds in all."""
        if not self.callbacks:
            return
        logger.info("draining: %d callback(s)", len(self.callbacks))
        tasks = [asyncio.ensure_future(callback()) for callback in self.callbacks]
        done, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        if pending:
            logger.error("drain callbacks still running after %ss: cancelled", within)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.error("drain callback failed", exc_info=task.exception())
