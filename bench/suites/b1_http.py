"""B1: HTTP reads. wrk (C, one thread, keep-alive) against one uvicorn process per arm:

- bare FastAPI `async def` returning a small dict, and townsquare's `GET /health`;
- bare FastAPI + one raw asyncpg `fetchrow`, and townsquare's authenticated
  `GET /users/{id}` (PostgreSQL + Redis, rate limiter on);
- the last two again at 10, 50, 200 and 500 connections: no stall means no error, no
  request past wrk's 5 s timeout, and a p99 that stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from pathlib import Path

from bench.context import Context
from bench.harness import Measured, Section

REPORT_LUA = Path(__file__).resolve().parent.parent / "report.lua"
TIMEOUT = "5s"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def wrk(
    url: str, *, connections: int, seconds: float, headers: dict[str, str], server: str
) -> Measured:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        TIMEOUT,
        "-s",
        str(REPORT_LUA),
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    before = _children_cpu()
    process = await asyncio.create_subprocess_exec(
        *argv, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), seconds + 30)
    used = _children_cpu() - before
    line = next((ln for ln in out.decode().splitlines() if ln.startswith("{")), None)
    if process.returncode != 0 or line is None:
        return Measured(values={}, problems=[f"wrk failed: {err.decode()[-300:]}"])
    r = json.loads(line)
    elapsed = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"]
    values = {
        "rps": r["requests"] / elapsed,
        "p50_ms": r["p50"] / 1000,
        "p90_ms": r["p90"] / 1000,
        "p99_ms": r["p99"] / 1000,
        "p999_ms": r["p999"] / 1000,
        "max_ms": r["max"] / 1000,
        "errors": errors,
        "timeouts": r["timeout"],
    }
    problems = []
    if errors:
        problems.append(f"{errors} errors (non-2xx {r['status']})")
    if r["timeout"]:
        problems.append(f"{r['timeout']} requests past {TIMEOUT}")
    return Measured(
        values=values,
        client_cpu={"wrk": used / elapsed},
        problems=problems,
        server=server,
        operations=r["requests"],
    )


async def layer_costs() -> str:
    """Each middleware of the app's stack alone, as `bench.http_read --layers` prints it,
    as one line ("EdgeMiddleware 9.1, ..."); empty when the tool failed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.http_read",
        "--layers",
        "--requests",
        "2000",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    costs = []
    for line in out.decode().splitlines():
        parts = line.split()
        if line.startswith("  ") and len(parts) >= 2:
            costs.append(f"{' '.join(parts[:-1])} {parts[-1]}")
    return ", ".join(costs) if process.returncode == 0 else ""


async def run(ctx: Context) -> None:
    plan, bench = ctx.plan, ctx.bench
    bare, ts = ctx.servers["bare-http"], ctx.servers["ts-pg"]
    reader, target = ctx.accounts["ts-pg"][0], ctx.accounts["ts-pg"][1]
    auth = {"Authorization": f"Bearer {reader.token}"}
    seconds = plan.http_seconds

    def arm(url: str, server: str, headers: dict[str, str], connections: int = 50):  # type: ignore[no-untyped-def]
        return lambda: wrk(
            url, connections=connections, seconds=seconds, headers=headers, server=server
        )

    # Warm both servers (imports, pools, caches) outside any measurement.
    for url, headers in (
        (f"{bare.http}/users/{target.id}", {}),
        (f"{ts.http}/users/{target.id}", auth),
    ):
        await wrk(url, connections=50, seconds=1, headers=headers, server="")

    reads = bench.section(
        Section("B1", "HTTP reads, 50 connections", "rps", "req/s", baseline="bare + asyncpg")
    )
    await bench.rounds(
        reads,
        {
            "bare + asyncpg": arm(f"{bare.http}/users/{target.id}", "bare-http", {}),
            "townsquare GET /users/{id}": arm(f"{ts.http}/users/{target.id}", "ts-pg", auth),
            "bare dict": arm(f"{bare.http}/bare", "bare-http", {}),
            "townsquare GET /health": arm(f"{ts.http}/health", "ts-pg", {}),
        },
        rounds=plan.http_rounds,
        reserve=ctx.reserve(0.72),
    )
    reads.notes.append(
        "ratios: townsquare GET /users/{id} over bare + asyncpg (target >= 0.6); "
        "for /health read its ratio against `bare dict` (target >= 0.8) in the table below"
    )
    layers = await layer_costs()
    if layers:
        reads.notes.append(
            "townsquare's middleware, each layer alone in process (us per request, "
            "`python -m bench.http_read --layers`): " + layers
        )
    sweep = bench.section(
        Section("B1-sweep", "HTTP reads by connections (no stall)", "rps", "req/s")
    )
    arms = {}
    for connections in plan.sweep:
        arms[f"bare + asyncpg c={connections}"] = arm(
            f"{bare.http}/users/{target.id}", "bare-http", {}, connections
        )
        arms[f"townsquare /users/{{id}} c={connections}"] = arm(
            f"{ts.http}/users/{target.id}", "ts-pg", auth, connections
        )
    await bench.rounds(sweep, arms, rounds=plan.sweep_rounds, reserve=ctx.reserve(0.6))
