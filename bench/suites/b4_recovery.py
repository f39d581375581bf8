"""B4: recovery. A room holding N stored messages (sent through /ws beforehand), then:

- townsquare: a fresh socket `join`s with `since: 0` and receives the whole history;
- baseline: the bare server reads the same rows with one raw asyncpg query, encodes
  each as the same `message` frame and sends it (nothing else);
- townsquare REST: `GET /rooms/{name}/messages?after_seq=` paged 200 at a time.

Rates are messages per second, from the request to the last message received.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench.context import Account, Context
from bench.harness import Measured, Section, utilization

PAGE = 200


async def rest_paging(url: str, account: Account, room: str, last_seq: int) -> Measured:
    headers = {"Authorization": f"Bearer {account.token}"}
    seqs: list[int] = []
    began = time.perf_counter()
    cpu = time.process_time()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        after = 0
        while after < last_seq:
            page = await client.get(
                f"/rooms/{room}/messages", params={"after_seq": after, "limit": PAGE}
            )
            page.raise_for_status()
            batch = [m["seq"] for m in page.json()]
            if not batch:
                break
            seqs += batch
            after = batch[-1]
    elapsed = time.perf_counter() - began
    problems = [] if seqs == list(range(1, last_seq + 1)) else ["pages incomplete or out of order"]
    return Measured(
        {"messages_per_s": len(seqs) / elapsed, "seconds": elapsed},
        {"coordinator": (time.process_time() - cpu) / elapsed},
        problems,
        server="ts-pg",
        operations=len(seqs),
    )


async def replay(
    ctx: Context, name: str, protocol: str, url: str, token: str, last: int
) -> Measured:
    reply = await ctx.workers.call(
        name,
        "replay",
        url=url,
        protocol=protocol,
        token=token,
        room="replay",
        since=0,
        last_seq=last,
    )
    problems = [] if reply["in_order_complete"] else [f"incomplete: {reply['messages']} of {last}"]
    return Measured(
        {"messages_per_s": reply["messages"] / reply["seconds"], "seconds": reply["seconds"]},
        {name: utilization(reply)},
        problems,
        server="ts-pg" if protocol == "townsquare" else "bare-ws",
        operations=reply["messages"],
    )


async def seed(ctx: Context, seeders: list[Account]) -> dict[str, Any]:
    """Store the history through /ws: the seeders send in parallel, a few in flight each."""
    workers, ts = ctx.workers, ctx.servers["ts-pg"]
    seeder = workers.spawn("seeder")
    try:
        await workers.call(
            seeder,
            "connect",
            url=ts.ws,
            protocol="townsquare",
            tokens=[a.token for a in seeders],
            room="replay",
            senders=list(range(1, len(seeders) + 1)),
        )
        await workers.call(seeder, "arm", expected=10**12, sender=None, record_latency=False)
        return await workers.call(seeder, "seed", total=ctx.plan.replay_messages, window=4)
    finally:
        await workers.stop(seeder)


async def run(ctx: Context, seeders: list[Account], seeded: dict[str, Any]) -> None:
    ts, bare = ctx.servers["ts-pg"], ctx.servers["bare-ws"]
    last = ctx.plan.replay_messages
    section = ctx.bench.section(
        Section(
            "B4",
            f"Recovery: {last} stored messages replayed (PostgreSQL)",
            "messages_per_s",
            "msg/s",
            baseline="bare asyncpg read + encode",
        )
    )
    rate = seeded["stored"] / seeded["seconds"]
    section.notes.append(
        f"history stored through /ws by {len(seeders)} senders in "
        f"{seeded['seconds']:.1f} s ({rate:,.0f} msg/s, during B3)"
    )
    client = ctx.workers.spawn("replayer")
    token = seeders[0].token
    await ctx.bench.rounds(
        section,
        {
            "townsquare join since=0": lambda: replay(
                ctx, client, "townsquare", ts.ws, token, last
            ),
            "bare asyncpg read + encode": lambda: replay(ctx, client, "bare", bare.ws, token, last),
            "townsquare REST paging": lambda: rest_paging(ts.http, seeders[0], "replay", last),
        },
        rounds=ctx.plan.replay_rounds,
        reserve=0,
    )
