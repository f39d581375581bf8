"""The server processes of a run: townsquare (`townsquare serve`), the bare baselines
and the python-socketio peer under uvicorn, a private redis-server, and throwaway
PostgreSQL databases. Every process is started here and stopped by its PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import psutil

BENCH_SECRET = "bench-only-signing-key-" + "x" * 24
# Heartbeats every server of a run gets (townsquare's WS_HEARTBEAT_*, uvicorn's
# --ws-ping-*, Engine.IO's ping): far apart, and patient. Under a 2,000-message burst a
# client's pong waits behind the messages it is still sending or receiving; with the
# 20-second defaults a server drops the socket, and what was queued on it, mid-run.
HEARTBEAT_INTERVAL = "600"
HEARTBEAT_TIMEOUT = "1800"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process on a free loopback port; `ready_path` answers once it is up."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], logs: Path, ready_path: str
    ) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = env
        self.log_path = logs / f"{name}.log"
        self.ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        """The server and its children (gunicorn workers, if any)."""
        if self.process is None or self.process.poll() is not None:
            return []
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [self.pid, *(c.pid for c in children)]

    def rss(self) -> int:
        return sum(psutil.Process(pid).memory_info().rss for pid in self.pids())

    async def start(self, within: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                self.argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    # Any answer below 500 means it serves (socket.io answers 400 to a
                    # plain GET when it only accepts the WebSocket transport).
                    if (await client.get(self.http + self.ready_path)).status_code < 500:
                        return
                await asyncio.sleep(0.2)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not start:\n{tail}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def townsquare_server(
    name: str, logs: Path, *, database_url: str, redis_url: str | None, extra: dict[str, str]
) -> Server:
    prefix = f"bench-{secrets.token_hex(4)}"
    env = {
        "ENV": "development",
        "SECRET_KEY": BENCH_SECRET,
        "DATABASE_URL": database_url,
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "INFO",
        # Rate limiting stays on (its cost is part of the request path) with limits no
        # benchmark reaches.
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_DEFAULT": "100000000/minute",
        "RATE_LIMIT_LOGIN": "100000000/minute",
        "RATE_LIMIT_SIGNUP": "100000000/minute",
        "RATE_LIMIT_KEY_PREFIX": f"{prefix}:ratelimit",
        "BROKER_CHANNEL_PREFIX": f"{prefix}:",
        # Cheap hashing: a run signs up about a thousand accounts.
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
        "ACCESS_TOKEN_TTL_SECONDS": "7200",
        # A burst publisher and closed-loop senders go far over a person's frame rate;
        # a 2,000-message burst must fit a subscriber's send queue.
        "WS_MESSAGES_PER_SECOND": "1000000",
        "WS_SEND_QUEUE_SIZE": "4096",
        "WS_HEARTBEAT_INTERVAL_SECONDS": HEARTBEAT_INTERVAL,
        "WS_HEARTBEAT_TIMEOUT_SECONDS": HEARTBEAT_TIMEOUT,
        "WS_REPLAY_MAX": "100000",
        "WS_MAX_CONNECTIONS_PER_USER": "100",
        "WORKER_CAPACITY": "20000",
        # The database pool is townsquare's default (a fixed pool, no overflow): an
        # overflow connection is closed when returned, so it would measure the churn
        # of PostgreSQL sessions a deployment does not have.
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    argv = [
        sys.executable,
        "-m",
        "townsquare.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    return Server(name, argv, env, logs, "/health")


def uvicorn_server(name: str, app: str, logs: Path, env: dict[str, str], ready: str) -> Server:
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--log-level",
        "warning",
        "--no-access-log",
        "--ws-ping-interval",
        HEARTBEAT_INTERVAL,
        "--ws-ping-timeout",
        HEARTBEAT_TIMEOUT,
    ]
    env = {
        "BENCH_HEARTBEAT_INTERVAL": HEARTBEAT_INTERVAL,
        "BENCH_HEARTBEAT_TIMEOUT": HEARTBEAT_TIMEOUT,
        **env,
    }
    return Server(name, argv, env, logs, ready)


class PrivateRedis:
    """A redis-server of the run's own, so its CPU is ours and nobody else's keys mix in."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                [
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
                    str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for _ in range(100):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Postgres:
    """Throwaway databases on the PostgreSQL server of BENCH_POSTGRES_URL."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.created: list[str] = []

    async def create(self, purpose: str) -> str:
        name = f"bench_{purpose}_{secrets.token_hex(4)}"
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        self.created.append(name)
        return name

    def dsn(self, name: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{name}"

    async def version(self) -> str:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    async def drop_all(self) -> None:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            for name in self.created:
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await connection.close()
        self.created = []
