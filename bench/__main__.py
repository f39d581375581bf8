"""townsquare against its baselines and peers, in one run (see bench/README.md).

    make bench          # the full run, about 10 minutes; writes bench/results/ and the README
    make bench-quick    # a smoke check under 2 minutes; writes bench/results/quick/
    python -m bench --only B1,B4 --server-env WS_REPLAY_MAX=20000

Loopback only; every server, redis-server and database it starts it also stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench import report
from bench.context import FULL, QUICK, Context, create_room, peer_tokens, sign_up
from bench.harness import Bench, Workers
from bench.machine import describe
from bench.procs import BENCH_SECRET, Postgres, PrivateRedis, townsquare_server, uvicorn_server
from bench.suites import b1_http, b2_rooms, b3_idle, b4_recovery, b5_connect

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SUITES = frozenset({"B1", "B2", "B3", "B4", "B5"})
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (smoke check)")
    parser.add_argument(
        "--only", default=",".join(sorted(DEFAULT_SUITES)), help="comma-separated suites to run"
    )
    parser.add_argument("--out", type=Path, help="results folder (default bench/results[/quick])")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the townsquare servers (e.g. a new limit's name)",
    )
    parser.add_argument(
        "--foreign-limit",
        type=float,
        default=0.25,
        help="cores of foreign CPU load above which a run is thrown away",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a py-spy profile (speedscope) of each townsquare run's window here",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="after each run, the CPU of each process of ours and of the busiest others",
    )
    parser.add_argument("--retries", type=int, help="reruns of a run thrown away (2; quick: 0)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL server where throwaway databases are created (BENCH_POSTGRES_URL)",
    )
    return parser.parse_args(argv)


async def migrate(database_url: str, logs: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": BENCH_SECRET}
    with (logs / "migrate.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "townsquare.cli", "migrate", env=env, stdout=log, stderr=log
        )
        if await process.wait() != 0:
            raise RuntimeError(f"townsquare migrate failed; see {logs / 'migrate.log'}")


async def main(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    suites = {s.strip().upper() for s in args.only.split(",")}
    out = args.out or ROOT / "bench" / "results" / ("quick" if args.quick else "")
    server_env = dict(item.split("=", 1) for item in args.server_env)
    if "B1" in suites and shutil.which("wrk") is None:
        print(
            "bench: B1 needs wrk, the HTTP load generator (Debian: apt-get install wrk); "
            "or leave B1 out: --only B2,B3,B4",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()

    def phase(text: str) -> None:
        """A step of the run, with the seconds since the start (where the time goes)."""
        print(f"[{time.monotonic() - started:4.0f} s] {text}", flush=True)

    logs = Path(tempfile.mkdtemp(prefix="townsquare-bench-"))
    print(f"townsquare bench ({plan.name}): logs in {logs}", flush=True)
    postgres = Postgres(args.postgres)
    redis = PrivateRedis(logs)
    workers = Workers()
    databases: list[str] = []
    ctx: Context | None = None

    def tracked() -> list[tuple[str, int]]:
        assert ctx is not None
        procs = [("coordinator", os.getpid())]
        for name, server in ctx.servers.items():
            procs += [(name, pid) for pid in server.pids()]
        procs += workers.pids()
        if redis.process is not None:
            procs.append(("redis", redis.process.pid))
        return procs

    bench = Bench(
        deadline=started + plan.deadline_seconds,
        foreign_limit=args.foreign_limit,
        retries=args.retries if args.retries is not None else (0 if args.quick else 2),
        tracked=tracked,
        databases=lambda: databases,
        server_pids=lambda name: ctx.servers[name].pids() if ctx else [],
        profile=args.profile,
        verbose=args.verbose,
    )
    ctx = Context(plan, bench, workers, redis, postgres, logs, server_env)
    try:
        await redis.start()
        database = await postgres.create("townsquare")
        databases.append(database)
        pg_dsn = ctx.pg_dsn = postgres.dsn(database)
        ts_url = pg_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        await migrate(ts_url, logs)
        shared = {
            "BENCH_PG_DSN": pg_dsn,
            "BENCH_REDIS_URL": redis.url,
            "BENCH_JWT_SECRET": BENCH_SECRET,
        }

        def ts_pg(name: str = "ts-pg"):  # type: ignore[no-untyped-def]
            return townsquare_server(
                name, logs, database_url=ts_url, redis_url=redis.url, extra=server_env
            )

        ts = await ctx.start(ts_pg())
        needed = plan.subscribers + 1 + plan.hot_members
        ctx.accounts["ts-pg"] = await sign_up(ts, needed)
        for room in ("fanout", "hot", "replay"):
            await create_room(ts, ctx.accounts["ts-pg"][0], room)
        phase(f"set-up done: {needed} accounts")

        if "B1" in suites:
            phase("B1")
            await ctx.start(
                uvicorn_server("bare-http", "bench.servers.bare_http:app", logs, shared, "/bare")
            )
            await b1_http.run(ctx)
            ctx.stop("bare-http")
        # B4's history is stored through /ws while B3 measures memory on servers of its
        # own (B3's figures are RSS, which CPU contention does not change).
        seeding = None
        seeders = ctx.accounts["ts-pg"][1 : 1 + plan.hot_members]
        if "B4" in suites:
            seeding = asyncio.create_task(b4_recovery.seed(ctx, seeders))
        if "B3" in suites:
            phase("B3")
            ts_tokens = [a.token for a in ctx.accounts["ts-pg"]]
            count = plan.idle_sockets + b3_idle.WARM_SOCKETS
            await b3_idle.run(
                ctx,
                {
                    "townsquare (PG + Redis)": (
                        lambda: ts_pg("ts-idle"),
                        "townsquare",
                        [ts_tokens[i % len(ts_tokens)] for i in range(count)],
                    ),
                    "bare uvicorn socket": (
                        lambda: uvicorn_server(
                            "bare-idle", "bench.servers.bare_ws:app", logs, shared, "/health"
                        ),
                        "bare",
                        [""] * count,
                    ),
                    "python-socketio": (
                        lambda: uvicorn_server(
                            "sio-idle", "bench.servers.sio:app", logs, shared, "/socket.io/"
                        ),
                        "socketio",
                        peer_tokens(count),
                    ),
                },
            )
        if "B2" in suites or "B4" in suites:
            await ctx.start(
                uvicorn_server("bare-ws", "bench.servers.bare_ws:app", logs, shared, "/health")
            )
        if seeding is not None:
            seeded = await seeding
        if "B2" in suites:
            phase("B2")
            await run_rooms(ctx, logs, server_env, phase)
        if "B4" in suites:
            phase("B4")
            await b4_recovery.run(ctx, seeders, seeded)
        if "B5" in suites:
            await b5_connect.run(ctx, shared, ts_url)
    finally:
        phase("stopping")
        await workers.stop_all()
        ctx.stop_all()
        redis.stop()
        await postgres.drop_all()

    phase("report")
    machine = describe({"postgresql": await postgres.version(), "plan": plan.name})
    command = "make bench-quick" if args.quick else "make bench"
    # Only a full run of every suite is the README's table.
    readme = None if args.quick or suites != DEFAULT_SUITES else ROOT / "README.md"
    written = report.write(bench.sections, machine, out, command, readme)
    print(f"\nresults: {written} ({time.monotonic() - started:.0f} s)\n")
    print(written.read_text())
    return 0


async def run_rooms(
    ctx: Context, logs: Path, server_env: dict[str, str], phase: Callable[[str], None]
) -> None:
    plan, workers = ctx.plan, ctx.workers
    shared = {"BENCH_REDIS_URL": ctx.redis.url, "BENCH_JWT_SECRET": BENCH_SECRET}
    sqlite_url = f"sqlite+aiosqlite:///{logs}/townsquare.db"
    embedded = await ctx.start(
        townsquare_server(
            "ts-sqlite", logs, database_url=sqlite_url, redis_url=None, extra=server_env
        )
    )
    needed = plan.subscribers + 1 + plan.hot_members
    ctx.accounts["ts-sqlite"] = await sign_up(embedded, needed)
    for room in ("fanout", "hot"):
        await create_room(embedded, ctx.accounts["ts-sqlite"][0], room)
    sio = await ctx.start(
        uvicorn_server("sio", "bench.servers.sio:app", logs, shared, "/socket.io/")
    )
    del sio
    arms = []
    for name, server, protocol, tokens in (
        ("python-socketio", "sio", "socketio", peer_tokens(needed)),
        ("bare FastAPI + redis-py", "bare-ws", "bare", [""] * needed),
        ("townsquare PG + Redis", "ts-pg", "townsquare", [a.token for a in ctx.accounts["ts-pg"]]),
        (
            "townsquare SQLite + memory",
            "ts-sqlite",
            "townsquare",
            [a.token for a in ctx.accounts["ts-sqlite"]],
        ),
    ):
        key = server
        arms.append(
            b2_rooms.Arm(
                name,
                server,
                protocol,
                tokens,
                subscribers=[workers.spawn(f"{key}-sub{i}") for i in range(2)],
                publisher=workers.spawn(f"{key}-pub"),
                hot=[workers.spawn(f"{key}-hot{i}") for i in range(2)],
            )
        )
    phase("B2: servers and accounts ready")
    await b2_rooms.run(ctx, arms, phase)


def entry() -> int:
    args = parse_args()
    print("$ " + shlex.join(["python", "-m", "bench", *sys.argv[1:]]), flush=True)
    return uvloop.run(main(args))


if __name__ == "__main__":
    sys.exit(entry())
