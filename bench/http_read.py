"""The HTTP read path against its limits: wrk against real uvicorn workers on PostgreSQL.

Arms, each its own uvicorn process (one worker, uvloop + httptools, no access log but
townsquare's own), all reading one PostgreSQL database:

- `bare`: a bare FastAPI `async def` GET returning a small dict (the ceiling);
- `raw-row`: bare FastAPI GET /users/{id} doing one raw asyncpg `fetchrow`;
- `ts-health`: townsquare's `GET /health` (every middleware, no database);
- `ts-user`: townsquare's authenticated `GET /users/{id}`.

Rounds interleave the arms so machine noise hits them alike; the table shows medians
and the ratios townsquare is judged by. `--layers` times each middleware alone,
in process, around an endpoint that does nothing.

    python -m bench.http_read                          # 50 connections, 3 rounds x 10 s
    python -m bench.http_read --connections 10,50,200,500 --rounds 1 --duration 5
    python -m bench.http_read --layers

Needs wrk and a PostgreSQL server (BENCH_POSTGRES_URL, default the local `test`
database as superuser); a throwaway database is created and dropped. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 (a throwaway key)
PASSWORD = "bench password 123"  # noqa: S105
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROW_SQL = "SELECT id, name, email, is_admin, is_active, created_at FROM users WHERE id = $1"


# -- the baseline apps (served by `python -m bench.http_read serve <arm>`) ---------------


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"status": "healthy"}

    return app


def raw_row_app(dsn: str) -> FastAPI:
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/users/{user_id}")
    async def read_user(user_id: int) -> dict[str, Any]:
        assert pool is not None
        row = await pool.fetchrow(ROW_SQL, user_id)
        return dict(row) if row else {}

    return app


def serve(arm: str, port: int) -> None:
    import uvicorn

    app = bare_app() if arm == "bare" else raw_row_app(os.environ["BENCH_DSN"])
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str


def start(name: str, argv: list[str], env: dict[str, str], log: Path, probe: str) -> Server:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--port", str(port)] if argv[-1] != "serve" else argv,
            env={**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}{probe}", timeout=1).status_code < 500:
                return Server(name, process, url)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{name} did not start; see {log}")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


# -- wrk ----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


@dataclass
class Run:
    rps: float
    p50: float
    p99: float
    errors: int  # non-2xx answers, socket errors and requests that timed out


def wrk(url: str, connections: int, duration: float, header: str | None) -> Run:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{round(duration)}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    if header:
        argv += ["-H", header]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(n) for n in match.groups())
    return Run(rps, p50, p99, errors)


@dataclass
class Arm:
    server: Server
    path: str
    header: str | None = None
    runs: dict[int, list[Run]] = field(default_factory=dict)

    def median(self, connections: int) -> Run:
        runs = self.runs[connections]
        return Run(
            statistics.median(r.rps for r in runs),
            statistics.median(r.p50 for r in runs),
            statistics.median(r.p99 for r in runs),
            sum(r.errors for r in runs),
        )


# -- the comparison -----------------------------------------------------------------------


async def prepare_database() -> tuple[str, str]:
    """A fresh migrated database; returns (asyncpg DSN, SQLAlchemy URL)."""
    from townsquare.platform import migrations
    from townsquare.platform.database import create_database

    name = f"townsquare_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    database = create_database(url)
    try:
        await migrations.upgrade(database.engine)
    finally:
        await database.dispose()
    return dsn, url


async def drop_database(dsn: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


def sign_in(url: str) -> tuple[int, str]:
    with httpx.Client(base_url=url, timeout=30) as client:
        email = f"bench{time.time_ns()}@example.com"
        created = client.post(
            "/users", json={"name": "Bench", "email": email, "password": PASSWORD}
        )
        created.raise_for_status()
        token = client.post("/auth/token", data={"username": email, "password": PASSWORD})
        token.raise_for_status()
        return created.json()["id"], token.json()["access_token"]


def compare(args: argparse.Namespace) -> None:
    dsn, url = asyncio.run(prepare_database())
    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="townsquare-bench-") as tmp:
            me = [sys.executable, "-m", "bench.http_read", "serve"]
            ts_env = {
                "ENV": "test",
                "SECRET_KEY": SECRET,
                "DATABASE_URL": url,
                "LOG_LEVEL": "INFO",
                "RATE_LIMIT_ENABLED": "true" if args.rate_limit else "false",
                "RATE_LIMIT_DEFAULT": "100000000/minute",
                "PASSWORD_HASH_TIME_COST": "1",
                "PASSWORD_HASH_MEMORY_KIB": "64",
            }
            if args.redis_url:
                ts_env["REDIS_URL"] = args.redis_url
                ts_env["BROKER_CHANNEL_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}:"
                ts_env["RATE_LIMIT_KEY_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}"
            ts_env.update(item.split("=", 1) for item in args.env)
            log_dir = Path(args.logs or tmp)
            ts = start(
                "townsquare",
                [sys.executable, "-m", "townsquare.cli", "serve"],
                ts_env,
                log_dir / "townsquare.log",
                "/health",
            )
            servers.append(ts)
            bare = start("bare", [*me, "bare"], {}, log_dir / "bare.log", "/")
            servers.append(bare)
            raw = start("raw-row", [*me, "raw-row"], {"BENCH_DSN": dsn}, log_dir / "raw.log", "/")
            servers.append(raw)
            user_id, token = sign_in(ts.url)
            auth = f"Authorization: Bearer {token}"
            arms = {
                "bare": Arm(bare, "/"),
                "raw-row": Arm(raw, f"/users/{user_id}"),
                "ts-health": Arm(ts, "/health"),
                "ts-user": Arm(ts, f"/users/{user_id}", auth),
            }
            if args.arms:
                arms = {name: arm for name, arm in arms.items() if name in args.arms.split(",")}
            for arm in arms.values():  # warm up: imports, prepared statements, caches
                wrk(arm.server.url + arm.path, 10, 2, arm.header)
            for connections in args.connections:
                for _ in range(args.rounds):
                    for arm in arms.values():
                        run = wrk(arm.server.url + arm.path, connections, args.duration, arm.header)
                        arm.runs.setdefault(connections, []).append(run)
            report(arms, args)
    finally:
        for server in servers:
            stop(server)
        asyncio.run(drop_database(dsn))


def report(arms: dict[str, Arm], args: argparse.Namespace) -> None:
    print(
        f"wrk -t1, {args.rounds} round(s) x {args.duration:g} s per arm and connection count, "
        f"arms interleaved; one uvicorn worker each; rate limiter "
        f"{'on' if args.rate_limit else 'off'}; REDIS_URL {'set' if args.redis_url else 'unset'}"
    )
    print(f"{'arm':<10} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for connections in args.connections:
        for name, arm in arms.items():
            m = arm.median(connections)
            print(
                f"{name:<10} {connections:>5} {m.rps:>9.0f} {m.p50:>8.2f} {m.p99:>8.2f} "
                f"{m.errors:>6}"
            )
        user, raw = arms["ts-user"].median(connections), arms["raw-row"].median(connections)
        health, bare = arms["ts-health"].median(connections), arms["bare"].median(connections)
        print(
            f"  {connections} connections: ts-user/raw-row {user.rps / raw.rps:.2f} "
            f"(p99 {user.p99 / raw.p99:.2f}x), ts-health/bare {health.rps / bare.rps:.2f}"
        )


# -- per-layer cost -----------------------------------------------------------------------


async def _layers(requests: int) -> None:
    """Each middleware of townsquare's own stack (as `create_app` builds it, rate limiter
    and CORS on), alone around an endpoint that answers at once, called in process with
    a minimal scope: the microseconds each layer adds to one request."""
    import logging

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from townsquare.config import Settings
    from townsquare.main import create_app
    from townsquare.platform.logging import configure_logging

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    configure_logging("INFO")
    # The access log's line is formatted and written as in production, to a null file.
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230 (lives as long as the process)

    settings = Settings(
        _env_file=None,
        env="test",
        secret_key=SECRET,
        rate_limit_enabled=True,
        rate_limit_default="1000000000/minute",
        allowed_origins=["https://example.com"],
    )
    app = create_app(settings)
    # Outermost first, as a request meets them.
    stack = [(getattr(m.cls, "__name__", repr(m.cls)), m) for m in app.user_middleware]
    token = app.state.tokens.encode_access(
        user_id=1, token_version=0, session_id="bench", now=datetime.now(UTC)
    )
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/users/1",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(_message: Message) -> None:
        return None

    async def timed(app: ASGIApp) -> float:
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(requests):
                await app(dict(scope, state={}), receive, send)
            best = min(best, (time.perf_counter() - began) / requests)
        return best

    base = await timed(endpoint)
    print(f"per-layer cost, best of 5 x {requests} in-process calls (microseconds per request)")
    total = 0.0
    for name, middleware in stack:
        wrapped: ASGIApp = middleware.cls(endpoint, *middleware.args, **middleware.kwargs)
        cost = await timed(wrapped) - base
        total += cost
        print(f"  {name:<28} {cost * 1e6:7.1f}")
    print(f"  {'all of them':<28} {total * 1e6:7.1f}")


def layers(args: argparse.Namespace) -> None:
    asyncio.run(_layers(args.requests))


# -- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_read", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve_cmd = sub.add_parser("serve")
    serve_cmd.add_argument("arm", choices=["bare", "raw-row"])
    serve_cmd.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--connections",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[50],
        help="comma-separated wrk connection counts (default 50)",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per count")
    parser.add_argument("--rate-limit", action="store_true", help="townsquare's limiter on")
    parser.add_argument("--redis-url", help="townsquare's REDIS_URL (default: unset)")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for townsquare (repeatable)"
    )
    parser.add_argument("--arms", help="comma-separated subset of the arms to run")
    parser.add_argument("--logs", help="folder for the servers' logs (default: a temp dir)")
    parser.add_argument("--layers", action="store_true", help="per-middleware cost instead")
    parser.add_argument("--requests", type=int, default=20_000, help="calls per layer timing")
    args = parser.parse_args(argv)
    commands: dict[str | None, Callable[[argparse.Namespace], Awaitable[None] | None]] = {
        "serve": lambda a: serve(a.arm, a.port),
        None: layers if args.layers else compare,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
