"""The drain seam: work that must happen on SIGTERM before the server closes connections.

uvicorn closes open WebSockets itself (code 1012, no message) as soon as it starts to
shut down, before the lifespan's shutdown runs; a lifespan hook is too late to tell a
client `bye`. So the server (`townsquare.platform.server`) stops accepting, then awaits
`Drain.run()`, and only then lets uvicorn close connections and run the lifespan.

One budget, `ShutdownBudget.of(GRACEFUL_TIMEOUT)`, splits the graceful timeout between
the phases: the drain (its callbacks are handed their share), then the in-flight
requests, then a margin to exit before gunicorn kills the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# A callback gets the seconds it may take, and should return within them.
DrainCallback = Callable[[float], Awaitable[None]]

# Of the graceful timeout, the share of the drain callbacks.
DRAIN_SHARE = 0.3
# Left at the end to run the lifespan shutdown and exit.
EXIT_MARGIN_SECONDS = 2.0
# Callbacks are told a little less than the drain's share, so their own timeouts end
# them before the drain has to cancel them.
_CALLBACK_SLACK = 0.9


@dataclass(frozen=True, slots=True)
class ShutdownBudget:
    """How a graceful timeout is spent: `drain` seconds for the drain callbacks, then
    up to `requests` seconds (uvicorn's timeout_graceful_shutdown, whole seconds) for
    in-flight requests; what is left is the exit margin."""

    drain: float
    requests: int

    @classmethod
    def of(cls, graceful_timeout: float) -> ShutdownBudget:
        drain = graceful_timeout * DRAIN_SHARE
        return cls(drain, max(1, int(graceful_timeout - drain - EXIT_MARGIN_SECONDS)))


class Drain:
    def __init__(self) -> None:
        self.callbacks: list[DrainCallback] = []

    def register(self, callback: DrainCallback) -> None:
        """Run `callback(within)` on SIGTERM, e.g. a connection manager's "say bye,
        close 1012, wait for the clients up to `within` seconds"."""
        self.callbacks.append(callback)

    async def run(self, within: float) -> None:
        """Run every callback concurrently, for at most `within` seconds in all."""
        if not self.callbacks:
            return
        logger.info("draining: %d callback(s)", len(self.callbacks))
        share = within * _CALLBACK_SLACK
        tasks = [asyncio.ensure_future(callback(share)) for callback in self.callbacks]
        done, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        if pending:
            logger.error("drain callbacks still running after %ss: cancelled", within)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.error("drain callback failed", exc_info=task.exception())
