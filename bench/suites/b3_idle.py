"""B3: idle sockets. Server memory per socket, as the RSS growth of a freshly started
server from before N sockets connect to after, divided by N; each socket
authenticated and then silent. Compression off, then on (the client offers
permessage-deflate; uvicorn accepts it for every arm).

Arms: townsquare (PostgreSQL + Redis, as deployed), a bare uvicorn WebSocket that only
accepts, python-socketio (a JWT verified on connect, like townsquare's handshake).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from bench.context import Context
from bench.harness import Measured, Section, utilization
from bench.procs import Server

WARM_SOCKETS = 20
SETTLE_SECONDS = 2.0


async def idle_memory(
    ctx: Context, make: Callable[[], Server], protocol: str, tokens: list[str], compression: bool
) -> Measured:
    workers = ctx.workers
    server = await ctx.start(make())
    name = workers.spawn(f"idle-{server.name}")
    try:
        # Connect a few first, so lazily imported code and first-use caches are not
        # counted as the sockets' cost.
        await workers.call(
            name,
            "idle",
            url=server.ws,
            protocol=protocol,
            tokens=tokens[:WARM_SOCKETS],
            compression=compression,
        )
        await asyncio.sleep(SETTLE_SECONDS)
        before = server.rss()
        count = len(tokens) - WARM_SOCKETS
        opened = await workers.call(
            name,
            "idle",
            url=server.ws,
            protocol=protocol,
            tokens=tokens[WARM_SOCKETS:],
            compression=compression,
        )
        await asyncio.sleep(SETTLE_SECONDS)
        after = server.rss()
        problems = []
        if opened["connected"] != len(tokens):
            problems.append(f"only {opened['connected']} of {len(tokens)} sockets connected")
        values = {
            "kib_per_socket": (after - before) / count / 1024,
            "rss_before_mib": before / 2**20,
            "rss_after_mib": after / 2**20,
            "connect_seconds": opened["seconds"],
            "deflate_negotiated": opened["deflate"] / count,  # of the measured sockets
        }
        return Measured(values, {name: utilization(opened)}, problems)
    finally:
        await workers.call(name, "idle_close")
        await workers.stop(name)
        ctx.stop(server.name)


async def run(ctx: Context, arms: dict[str, tuple[Callable[[], Server], str, list[str]]]) -> None:
    count = ctx.plan.idle_sockets + WARM_SOCKETS
    for compression in (False, True):
        label = "on" if compression else "off"
        section = ctx.bench.section(
            Section(
                f"B3-deflate-{label}",
                f"Idle sockets: server memory per authenticated socket, {ctx.plan.idle_sockets} "
                f"sockets, permessage-deflate {label}",
                "kib_per_socket",
                "KiB/socket",
                higher_is_better=False,
                baseline="bare uvicorn socket",
            )
        )
        await ctx.bench.rounds(
            section,
            {
                arm: partial(idle_memory, ctx, make, p, t[:count], compression)
                for arm, (make, p, t) in arms.items()
            },
            rounds=1,
            reserve=ctx.reserve(0.5),
        )
        for arm in section.runs:
            share = section.median(arm, "deflate_negotiated")
            if compression and share is not None and share < 1:
                why = " (townsquare turns it off: zlib state per connection)"
                section.notes.append(
                    f"{arm}: the server declined permessage-deflate on {1 - share:.0%} of "
                    f"the sockets{why if arm.startswith('townsquare') else ''}"
                )
