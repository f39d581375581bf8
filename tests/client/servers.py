"""A real server the test may SIGKILL and start again, on the same port and the same
SQLite file (what a client sees when its server crashes and comes back)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from tests.conftest import TEST_SECRET
from tests.support.server import free_port

# Short heartbeats so that dead connections are found in a second or two, and room
# for a client that sends hundreds of frames a second.
SERVER_ENV = {
    "ENV": "test",
    "SECRET_KEY": TEST_SECRET,
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "64",
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_ENABLED": "false",
    "WS_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "WS_HEARTBEAT_TIMEOUT_SECONDS": "1.5",
    # An expired token gets `token_expired`, then 1008 this long after.
    "WS_AUTH_TIMEOUT_SECONDS": "1",
    "WS_MESSAGES_PER_SECOND": "2000",
    "WS_SEND_QUEUE_SIZE": "2000",
}
HEARTBEAT_TIMEOUT = 1.5
AUTH_TIMEOUT = 1.0
WAIT = 30.0  # seconds: a bound against hangs, never a measurement


class RestartableServer:
    def __init__(self, directory: Path, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        self.env = {
            **os.environ,
            **SERVER_ENV,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'restartable.db'}",
            **env,
        }
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        assert self.process is None, "already running"
        self.starts += 1
        with (self.directory / f"server-{self.starts}.log").open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "townsquare.cli",
                "serve",
                env=self.env,
                stdout=log,
                stderr=log,
            )
        await self._wait_healthy()

    async def _wait_healthy(self) -> None:
        assert self.process is not None
        async with httpx.AsyncClient(timeout=1) as http, asyncio.timeout(2 * WAIT):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}")
                try:
                    if (await http.get(f"{self.base_url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no `bye`, no close frame; the kernel resets the connections."""
        process, self.process = self.process, None
        assert process is not None
        process.kill()
        await process.wait()

    async def stop(self) -> None:
        """SIGTERM: the graceful way (`bye`, then close 1012)."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(WAIT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
