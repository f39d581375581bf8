"""Redis commands that arrive together share one round trip.

A caller hands one command and awaits its answer; while one batch is on its way to
Redis the next ones queue, and go as one pipeline (not a transaction: each command is
still decided on its own, in arrival order). Under load batches grow by themselves, at
rest a command goes at once. Scripts go by digest (EVALSHA) and are loaded, and the
batch sent again, when Redis lacks them (a restarted or fresh server).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

Command = tuple[Any, ...]


class Batches:
    def __init__(self, redis: Redis, *, timeout: float, scripts: list[str]) -> None:
        self._redis = redis
        self._timeout = timeout
        self._scripts = scripts
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, command: Command) -> Any:
        """`command`'s answer, sent with the others queued meanwhile; its error raised
        (a RedisError, OSError or TimeoutError when Redis cannot answer)."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="redis batches")
        return await asyncio.shield(done)

    async def aclose(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send(self) -> None:
        batch: list[tuple[Command, asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    async with asyncio.timeout(self._timeout):
                        results = await self._pipeline([c for c, _ in batch])
                except (RedisError, OSError, TimeoutError) as exc:
                    results = [exc] * len(batch)
                for (_, done), result in zip(batch, results, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            # Stopped (closing): nobody waits forever for an answer that won't come.
            for _, done in [*batch, *self._queue]:
                if not done.done():
                    done.set_exception(RedisError("closed"))

    async def _pipeline(self, commands: list[Command]) -> list[Any]:
        for attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt or not any(isinstance(r, NoScriptError) for r in results):
                break
            for script in self._scripts:
                await self._redis.script_load(script)
        return results
