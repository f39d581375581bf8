"""B2: one room. Four servers, the same picows clients, one worker process each:

- python-socketio + AsyncRedisManager (the peer), a bare FastAPI WebSocket + redis-py
  fan-out (no storage, no auth, no checks: the limit), townsquare on PostgreSQL +
  Redis, townsquare on its embedded default (SQLite + in-memory broker);
- fan-out: N subscribers, one publisher bursting M messages (deliveries per second,
  from the first send to the last receipt), then paced at 50 msg/s (send-to-receive
  latency percentiles);
- hot room: 20 members each sending its next message when its own comes back.

Every receiver checks each message arrives once, in order (and on townsquare that the
room's `seq` has no hole); a run that lost, doubled or reordered anything is invalid.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from bench.context import Context
from bench.harness import Measured, Section, utilization

SETTLE_TIMEOUT = 20.0  # seconds without progress before a receiver is declared short
_senders = itertools.count(1)


@dataclass
class Arm:
    name: str
    server: str
    protocol: str
    tokens: list[str]
    subscribers: list[str]  # worker names
    publisher: str
    hot: list[str]  # worker names holding the hot room's members


def latency_values(blobs: list[bytes], prefix: str) -> dict[str, float]:
    data = np.frombuffer(b"".join(blobs), dtype=np.int64)
    if data.size == 0:
        return {}
    p = np.percentile(data, [50, 90, 99]) / 1e6
    return {
        f"{prefix}p50_ms": float(p[0]),
        f"{prefix}p90_ms": float(p[1]),
        f"{prefix}p99_ms": float(p[2]),
        f"{prefix}max_ms": float(data.max() / 1e6),
    }


def problems_of(replies: list[dict[str, Any]], senders: dict[str, Any] | None = None) -> list[str]:
    """Why a run is invalid: the receivers' losses, gaps, duplicates, errors and closed
    sockets, and a sender's socket closed or told of an error (its unsent rest lost)."""
    found = []
    for key in ("missing", "gaps", "duplicates", "seq_errors", "errors", "closed"):
        total = sum(r[key] for r in replies)
        if total:
            found.append(f"{key} {total}")
    if senders is not None:
        if senders["closed"]:
            found.append("publisher's socket closed")
        if senders["errors"]:
            found.append(f"publisher told of {senders['errors']} error(s)")
    first = next((r["first_error"] for r in replies if r["first_error"]), None)
    first = first or (senders or {}).get("first_error")
    if first:
        found.append(f"first error: {first[:120]}")
    return found


async def fan_out(ctx: Context, arm: Arm, *, messages: int, rate: float | None) -> Measured:
    workers = ctx.workers
    sender = next(_senders)
    for name in arm.subscribers:
        await workers.call(name, "arm", expected=messages, sender=sender, record_latency=True)
    if rate is None:
        sent = await workers.call(arm.publisher, "burst", messages=messages, sender=sender)
    else:
        sent = await workers.call(
            arm.publisher, "paced", messages=messages, rate=rate, sender=sender
        )
    replies = await asyncio.gather(
        *(workers.call(n, "wait", within=SETTLE_TIMEOUT) for n in arm.subscribers)
    )
    publisher = await workers.call(arm.publisher, "status")
    received = sum(r["received"] for r in replies)
    last = max(r["last_ns"] for r in replies)
    # From the first send to the last receipt; with nothing received, the publisher's
    # command and the wait for receipts (the run's wall time, not a negative span).
    waited = max(float(r["wall"]) for r in replies)
    seconds = (last - sent["first_send_ns"]) / 1e9 if received else sent["wall"] + waited
    seconds = max(seconds, 1e-3)
    values = {"deliveries_per_s": received / seconds, "seconds": seconds, "received": received}
    values |= latency_values([r["latencies"] for r in replies], "")
    cpu = {n: utilization(r) for n, r in zip(arm.subscribers, replies, strict=True)}
    # A burst is meant to be sent at once: the publisher is busy for the whole of its
    # short command, so its load is judged over the run instead (never a span shorter
    # than the command itself).
    cpu[arm.publisher] = sent["cpu"] / max(seconds, sent["wall"])
    problems = problems_of(replies, publisher)
    return Measured(values, cpu, problems, server=arm.server, operations=received)


async def hot_room(ctx: Context, arm: Arm, *, seconds: float) -> Measured:
    workers = ctx.workers
    base = next(_senders) * 1000
    for name in arm.hot:
        await workers.call(name, "arm", expected=10**12, sender=None, record_latency=False)
    looped = await asyncio.gather(
        *(
            workers.call(name, "loop", seconds=seconds, sender_base=base + 100 * i)
            for i, name in enumerate(arm.hot)
        )
    )
    total = sum(sum(r["sent"].values()) for r in looped)
    settled = await asyncio.gather(
        *(workers.call(name, "settle", expected=total, within=SETTLE_TIMEOUT) for name in arm.hot)
    )
    began = min(r["began_ns"] for r in looped)
    elapsed = (max(r["last_ns"] for r in settled) - began) / 1e9
    values = {"messages_per_s": total / elapsed, "messages": total}
    values |= latency_values([r["rtts"] for r in looped], "rtt_")
    cpu = {
        name: max(utilization(loop), utilization(settle))
        for name, loop, settle in zip(arm.hot, looped, settled, strict=True)
    }
    deliveries = sum(r["received"] for r in settled)
    return Measured(values, cpu, problems_of(settled), server=arm.server, operations=deliveries)


async def prepare(ctx: Context, arm: Arm, room: str, hot_room_name: str) -> None:
    plan, workers = ctx.plan, ctx.workers
    server = ctx.servers[arm.server]
    tokens = arm.tokens
    per = -(-plan.subscribers // len(arm.subscribers))
    offset = 0
    for name in arm.subscribers:
        share = tokens[offset : offset + per]
        await workers.call(
            name,
            "connect",
            url=server.ws,
            protocol=arm.protocol,
            tokens=share,
            room=room,
            senders=[0] * len(share),
        )
        offset += per
    publisher = tokens[plan.subscribers]
    await workers.call(
        arm.publisher,
        "connect",
        url=server.ws,
        protocol=arm.protocol,
        tokens=[publisher],
        room=room,
        senders=[0],
    )
    members = tokens[plan.subscribers + 1 : plan.subscribers + 1 + plan.hot_members]
    half = -(-len(members) // len(arm.hot))
    for i, name in enumerate(arm.hot):
        share = members[i * half : (i + 1) * half]
        await workers.call(
            name,
            "connect",
            url=server.ws,
            protocol=arm.protocol,
            tokens=share,
            room=hot_room_name,
            senders=[0] * len(share),
        )


async def run(ctx: Context, arms: list[Arm], phase: Callable[[str], None]) -> None:
    plan, bench = ctx.plan, ctx.bench
    for arm in arms:
        await prepare(ctx, arm, "fanout", "hot")
        # Warm-up: a short burst and a short hot loop, not measured.
        await fan_out(ctx, arm, messages=min(100, plan.burst), rate=None)
        await hot_room(ctx, arm, seconds=0.5)
        phase(f"B2: {arm.name} connected and warm")
    names = {arm.name: arm for arm in arms}
    burst = bench.section(
        Section(
            "B2-burst",
            f"Room fan-out: 1 room x {plan.subscribers} subscribers, one publisher "
            f"bursting {plan.burst} messages",
            "deliveries_per_s",
            "deliveries/s",
            baseline="python-socketio",
        )
    )
    paced = bench.section(
        Section(
            "B2-paced",
            f"Room fan-out paced at {plan.paced_rate:g} msg/s: send-to-receive "
            f"latency, {plan.subscribers} subscribers",
            "p99_ms",
            "ms p99",
            higher_is_better=False,
            baseline="python-socketio",
        )
    )
    hot = bench.section(
        Section(
            "B2-hot",
            f"Hot room: {plan.hot_members} members each sending in a closed loop",
            "messages_per_s",
            "msg/s",
            baseline="bare FastAPI + redis-py",
        )
    )
    burst.notes.append(
        "ratio over python-socketio; issue 11 targets townsquare PG+Redis "
        ">= 1.5x socketio and >= 0.7x bare"
    )
    await bench.rounds(
        burst,
        {n: partial(fan_out, ctx, a, messages=plan.burst, rate=None) for n, a in names.items()},
        # python-socketio's burst alone takes a minute or more: a second round only
        # when it leaves the paced and hot sections and B4 their time.
        rounds=plan.room_rounds,
        reserve=ctx.reserve(0.4),
    )
    messages = int(plan.paced_seconds * plan.paced_rate)
    await bench.rounds(
        paced,
        {
            n: partial(fan_out, ctx, a, messages=messages, rate=plan.paced_rate)
            for n, a in names.items()
        },
        rounds=1,
        reserve=ctx.reserve(0.22),
    )
    await bench.rounds(
        hot,
        {n: partial(hot_room, ctx, a, seconds=plan.hot_seconds) for n, a in names.items()},
        rounds=plan.room_rounds,
        reserve=ctx.reserve(0.14),
    )
