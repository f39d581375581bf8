"""What the middleware stack costs: an authenticated GET /users/{id}, full app vs bare app.

Both are the same app on the same SQLite file; the bare one has its middleware list
emptied (request id, access log, metrics, security headers, CORS, rate limit). Each
runs in its own real uvicorn process on loopback; the client alternates rounds between
them so machine noise hits both alike, and reports the throughput ratio.

    make bench                      # or: python -m bench.middleware --requests 3000
    python -m bench.middleware --profile    # where the time of one request goes
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 (a throwaway bench key)
PASSWORD = "bench password 123"  # noqa: S105


def settings_env(db_url: str) -> dict[str, str]:
    return {
        "ENV": "test",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": db_url,
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_DEFAULT": "1000000/minute",
        "LOG_LEVEL": "INFO",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
    }


def build_app(variant: str):  # type: ignore[no-untyped-def]
    from townsquare.config import Settings
    from townsquare.main import create_app

    app = create_app(Settings(_env_file=None))
    if variant == "bare":
        app.user_middleware.clear()
    return app


def serve(variant: str, port: int) -> None:
    import uvicorn

    from townsquare.platform.logging import configure_logging

    configure_logging("INFO")
    config = uvicorn.Config(
        build_app(variant), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    uvicorn.Server(config).run()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(variant: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.middleware", "serve", variant, "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{variant} server did not start; see {log}")


async def account(url: str) -> tuple[int, dict[str, str]]:
    async with httpx.AsyncClient(base_url=url) as client:
        email = f"bench{time.time_ns()}@example.com"
        created = await client.post(
            "/users", json={"name": "Bench", "email": email, "password": PASSWORD}
        )
        created.raise_for_status()
        token = await client.post("/auth/token", data={"username": email, "password": PASSWORD})
        token.raise_for_status()
        return created.json()["id"], {"Authorization": f"Bearer {token.json()['access_token']}"}


async def round_(
    url: str, path: str, headers: dict[str, str], requests: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    remaining = requests
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"{url}{path}: {response.status_code} {response.text}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return requests / elapsed, latencies


async def compare(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="townsquare-bench-") as tmp:
        db_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        env = settings_env(db_url)
        full, full_url = start("full", env, Path(tmp) / "full.log")
        try:
            bare, bare_url = start("bare", env, Path(tmp) / "bare.log")
            try:
                user_id, headers = await account(full_url)
                path = f"/users/{user_id}"
                await round_(full_url, path, headers, 200, args.concurrency)  # warm up
                await round_(bare_url, path, headers, 200, args.concurrency)
                results: dict[str, list[float]] = {"full": [], "bare": []}
                latencies: dict[str, list[float]] = {"full": [], "bare": []}
                for _ in range(args.rounds):
                    for name, url in (("full", full_url), ("bare", bare_url)):
                        rps, lat = await round_(url, path, headers, args.requests, args.concurrency)
                        results[name].append(rps)
                        latencies[name].extend(lat)
            finally:
                bare.terminate()
                bare.wait(timeout=15)
        finally:
            full.terminate()
            full.wait(timeout=15)

    print(
        f"GET /users/{{id}} authenticated, {args.rounds} rounds x {args.requests} requests, "
        f"concurrency {args.concurrency}, one uvicorn process each, loopback"
    )
    print(f"{'stack':<6} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8}")
    medians = {}
    for name in ("bare", "full"):
        medians[name] = statistics.median(results[name])
        lat = sorted(latencies[name])
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[int(len(lat) * 0.99)] * 1000
        print(f"{name:<6} {medians[name]:>15.0f} {p50:>8.2f} {p99:>8.2f}")
    print(f"full/bare throughput ratio: {medians['full'] / medians['bare']:.3f}")


async def profile(args: argparse.Namespace) -> None:
    """Profile the full app in-process (no network): where does one request's time go?"""
    with tempfile.TemporaryDirectory(prefix="townsquare-bench-") as tmp:
        os.environ.update(settings_env(f"sqlite+aiosqlite:///{tmp}/bench.db"))
        app = build_app("full")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                email = "profile@example.com"
                await client.post(
                    "/users", json={"name": "P", "email": email, "password": PASSWORD}
                )
                token = await client.post(
                    "/auth/token", data={"username": email, "password": PASSWORD}
                )
                headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
                for _ in range(50):
                    await client.get("/users/1", headers=headers)
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(args.requests):
                    await client.get("/users/1", headers=headers)
                profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    by_package: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for package in (
            "sqlalchemy",
            "aiosqlite",
            "jwt",
            "pydantic",
            "fastapi",
            "starlette",
            "httpx",
            "prometheus_client",
            "limits",
            "townsquare",
            "asyncio",
            "logging",
            "json",
        ):
            if f"/{package}/" in filename or filename.endswith(f"/{package}.py"):
                by_package[package] = by_package.get(package, 0.0) + tt
                break
        else:
            by_package["other"] = by_package.get("other", 0.0) + tt
    print(
        f"{args.requests} in-process GET /users/{{id}}: {total * 1000 / args.requests:.3f} ms "
        "of profiled CPU each (profiler overhead included)"
    )
    print("own time by package:")
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1]):
        print(f"  {package:<18} {100 * seconds / total:5.1f}%")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    if args.verbose:
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve")
    srv.add_argument("variant", choices=["full", "bare"])
    srv.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="profile in-process instead")
    parser.add_argument("--verbose", action="store_true", help="print the full profile")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.variant, args.port)
    elif args.profile:
        asyncio.run(profile(args))
    else:
        asyncio.run(compare(args))


if __name__ == "__main__":
    main()
