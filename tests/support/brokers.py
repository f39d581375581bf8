"""Redis for tests: the shared server (random prefixes, never flushed) and private
`redis-server` processes that a fault test may stop and start by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.support.databases import missing_service
from tests.support.server import free_port

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def random_prefix() -> str:
    """A channel namespace no other test, run or helper uses."""
    return f"test:{uuid.uuid4().hex[:12]}:"


async def redis_answers(url: str, within: float = 2.0) -> bool:
    client = Redis.from_url(url, socket_timeout=within, socket_connect_timeout=within)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def require_shared_redis() -> str:
    """The shared Redis URL, or a skip (a failure when CI is set) if it is down."""
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        missing_service("Redis", exc)
    finally:
        await client.aclose()
    return REDIS_URL


async def eventually(condition: Callable[[], bool | Awaitable[bool]], within: float) -> bool:
    """Poll `condition` until it holds or `within` seconds pass; a bound, not a measurement."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)


class RedisServer:
    """A private `redis-server` on a free loopback port, no persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 10.0) -> None:
        assert self._process is None, "already running"
        log = (self._directory / f"redis-{self.port}.log").open("ab")
        with log:
            self._process = await asyncio.create_subprocess_exec(
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
                stdout=log,
                stderr=log,
            )
        if not await eventually(lambda: redis_answers(self.url, within=0.5), within):
            await self.stop()
            raise RuntimeError(f"private redis-server on port {self.port} did not start")

    async def stop(self) -> None:
        """SIGKILL, like a crash: no goodbye to the clients."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.kill()
        await process.wait()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a half-open link)."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signal.SIGCONT)
