"""B5: a connect storm. N authenticated sockets (a bearer token on the handshake) connect
at once and join one room; the headline is the time from the first handshake until
every socket has its `joined`, and beside it the server's CPU per socket over that
window. The sockets take `USERS` accounts in turn (20 sockets each): each user's first
socket brings a `presence` frame to every member already in, the later ones none. So
the storm measures the handshake and join path, not presence fan-out, which grows with
the square of the distinct users in one room and is B2's subject (deliveries).

Arms, each a fresh server per run (so no cache is warm that a restart would not have):
townsquare on PostgreSQL + Redis as deployed, and the bare FastAPI WebSocket of
`bench/servers/bare_ws.py` (`/join`: accept, `welcome`, answer the join with `joined`),
driven by the same picows clients (two processes, 50 handshakes in flight each).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.context import Context, create_room
from bench.harness import RETRY_PAUSE, SATURATED, Run, Section, utilization
from bench.procs import Server, townsquare_server, uvicorn_server

ROOM = "connect"
USERS = 100
CLIENTS = 2
WARM_SOCKETS = 20
SETTLE_SECONDS = 1.0
BASELINE = "bare FastAPI WebSocket"


def sockets_for(ctx: Context) -> int:
    return 2000 if ctx.plan.name == "full" else 300


async def storm(
    ctx: Context, arm: str, make: Callable[[], Server], protocol: str, tokens: list[str]
) -> tuple[Run, str]:
    """One run on a fresh server: warm it with a few sockets, then open the rest."""
    workers = ctx.workers
    server = await ctx.start(make())
    names = [workers.spawn(f"connect-{server.name}-{i}") for i in range(CLIENTS)]
    warm, rest = tokens[:WARM_SOCKETS], tokens[WARM_SOCKETS:]
    try:
        await workers.call(
            names[0],
            "connect",
            url=server.ws,
            protocol=protocol,
            tokens=warm,
            room=ROOM,
            senders=[0] * len(warm),
        )
        await asyncio.sleep(SETTLE_SECONDS)
        shares = [rest[i::CLIENTS] for i in range(CLIENTS)]
        profiler = await _profile(ctx, server, arm) if protocol == "townsquare" else None
        ctx.bench.watch.start()
        replies = await asyncio.gather(
            *(
                workers.call(
                    name,
                    "connect",
                    url=server.ws,
                    protocol=protocol,
                    tokens=share,
                    room=ROOM,
                    senders=[0] * len(share),
                )
                for name, share in zip(names, shares, strict=True)
            ),
            return_exceptions=True,
        )
        cpu = ctx.bench.watch.stop()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(profiler.wait(), 30)
    finally:
        for name in names:
            await workers.stop(name)
        ctx.stop(server.name)
    problems = [str(r)[:300] for r in replies if isinstance(r, BaseException)]
    good = [r for r in replies if isinstance(r, dict)]
    connected = sum(r["connected"] for r in good) - len(warm)
    if connected != len(rest):
        problems.append(f"only {connected} of {len(rest)} sockets joined")
    seconds = max((r["seconds"] for r in good), default=0.0)
    used = cpu.per_process.get(server.name, 0.0)
    values = {
        "seconds": seconds,
        "sockets_per_s": len(rest) / seconds if seconds else 0.0,
        "server_cpu_ms_per_socket": used / len(rest) * 1e3,
        "server_cores": used / cpu.wall,
    }
    peak = max((utilization(r) for r in good), default=0.0)
    if peak > SATURATED:
        problems.append(f"load generator saturated ({peak:.0%} of a core)")
    run = Run(arm, values, cpu, peak, used / len(rest) * 1e6, problems)
    return run, server.name


async def _profile(ctx: Context, server: Server, arm: str) -> asyncio.subprocess.Process | None:
    """py-spy on the townsquare server for the storm (`--profile DIR`)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if ctx.bench.profile is None or spy is None:
        return None
    ctx.bench.profile.mkdir(parents=True, exist_ok=True)
    out = ctx.bench.profile / f"B5-{time.strftime('%H%M%S')}.speedscope.json"
    argv = [spy, "record", "--pid", str(server.pid), "--rate", "200", "--nonblocking"]
    argv += ["--format", "speedscope", "--output", str(out)]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await asyncio.sleep(0.5)  # attached before the window starts
    return process


async def run(ctx: Context, shared: dict[str, str], database_url: str) -> None:
    plan, bench = ctx.plan, ctx.bench
    count = sockets_for(ctx) + WARM_SOCKETS
    accounts = ctx.accounts["ts-pg"][:USERS]
    await create_room(ctx.servers["ts-pg"], accounts[0], ROOM)
    tokens = [accounts[i % len(accounts)].token for i in range(count)]
    section = bench.section(
        Section(
            "B5",
            f"Connect storm: {count - WARM_SOCKETS} authenticated sockets connect and join "
            "one room (seconds until all joined; server CPU per socket)",
            "seconds",
            "s",
            higher_is_better=False,
            baseline=BASELINE,
        )
    )
    arms: dict[str, tuple[Callable[[], Server], str, list[str]]] = {
        "townsquare PG + Redis": (
            lambda: townsquare_server(
                "ts-connect",
                ctx.logs,
                database_url=database_url,
                redis_url=ctx.redis.url,
                extra=ctx.server_env,
            ),
            "townsquare",
            tokens,
        ),
        BASELINE: (
            lambda: uvicorn_server(
                "bare-connect", "bench.servers.bare_ws:app", ctx.logs, shared, "/health"
            ),
            "bare-join",
            [""] * count,
        ),
    }
    names = list(arms)
    for number in range(3 if plan.name == "full" else 1):
        if number > 0 and bench.remaining() < 0:
            section.notes.append(f"stopped after {number} round(s): time budget")
            break
        for arm in names[number % 2 :] + names[: number % 2]:
            make, protocol, tokens = arms[arm]
            for attempt in range(bench.retries + 1):
                result, _ = await storm(ctx, arm, make, protocol, tokens)
                noisy = result.cpu.foreign_cores > bench.foreign_limit
                values = result.values
                if noisy and attempt < bench.retries:
                    section.discarded[arm] = section.discarded.get(arm, 0) + 1
                    print(
                        f"  B5 {arm}: thrown away, foreign load "
                        f"{result.cpu.foreign_cores:.2f} cores ({values['seconds']:.2f} s, "
                        f"{values['server_cpu_ms_per_socket']:.2f} ms CPU/socket)",
                        flush=True,
                    )
                    await asyncio.sleep(RETRY_PAUSE)
                    continue
                result.noisy = noisy
                section.runs.setdefault(arm, []).append(result)
                print(
                    f"  B5 {arm}: {values['seconds']:.2f} s, "
                    f"{values['server_cpu_ms_per_socket']:.2f} ms CPU/socket "
                    f"(foreign {result.cpu.foreign_cores:.2f} cores)"
                    + (" NOISY" if noisy else "")
                    + (" INVALID: " + "; ".join(result.problems) if result.problems else ""),
                    flush=True,
                )
                break
    ts, bare = (section.median(a) for a in names)
    ts_cpu, bare_cpu = (section.median(a, "server_cpu_ms_per_socket") for a in names)
    if ts and bare and ts_cpu and bare_cpu:
        section.notes.append(
            f"time ratio {ts / bare:.2f} (target <= 2); server CPU per socket "
            f"{ts_cpu:.2f} ms vs {bare_cpu:.2f} ms ({ts_cpu / bare_cpu:.2f}x)"
        )
