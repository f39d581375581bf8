"""Broker figures: publish-to-receive throughput (Redis as a ratio of memory) and what
a Redis outage costs. Loopback only, bounded, stops by itself; a private redis-server
is started on a free port and killed by PID.

    .venv/bin/python -m bench.broker [--messages 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from pathlib import Path

from tests.support.brokers import RedisServer, eventually, random_prefix

from townsquare.platform.broker.base import BrokerBackend, BrokerUnavailable
from townsquare.platform.broker.memory import MemoryBackend
from townsquare.platform.broker.redis import RedisBackend


async def throughput(backend: BrokerBackend, messages: int) -> float:
    """Messages per second, published one after another and all received."""
    await backend.subscribe("bench")
    payload = b"x" * 200

    async def consume() -> None:
        for _ in range(messages):
            await backend.next_event()

    consumer = asyncio.create_task(consume())
    started = time.perf_counter()
    for _ in range(messages):
        await backend.publish("bench", payload)
    await asyncio.wait_for(consumer, 60)
    return messages / (time.perf_counter() - started)


async def outage(server: RedisServer) -> dict[str, float]:
    backend = RedisBackend(
        server.url, prefix=random_prefix(), timeout=0.5, backoff_initial=0.05, backoff_max=1.0
    )
    await backend.connect()
    await backend.subscribe("stream")
    published: list[int] = []
    received: list[int] = []
    refused = 0
    stop = asyncio.Event()

    async def produce() -> None:
        nonlocal refused
        number = 0
        while not stop.is_set():
            number += 1
            try:
                await backend.publish("stream", str(number).encode())
                published.append(number)
            except BrokerUnavailable:
                refused += 1
            await asyncio.sleep(0.002)

    async def consume() -> None:
        while True:
            received.append(int((await backend.next_event()).payload))

    tasks = [asyncio.create_task(produce()), asyncio.create_task(consume())]
    await asyncio.sleep(1.0)
    killed = time.perf_counter()
    await server.stop()
    await eventually(lambda: not backend.is_healthy(), 30)
    detected = time.perf_counter() - killed
    await asyncio.sleep(1.0)
    restarted = time.perf_counter()
    await server.start()
    await eventually(backend.is_healthy, 30)
    recovered = time.perf_counter() - restarted
    probe_ok = await backend.probe(2.0)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.sleep(0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await backend.disconnect()
    accepted_not_received = len(set(published) - set(received))
    return {
        "detect_unhealthy_s": detected,
        "reconnect_after_restart_s": recovered,
        "probe_after_recovery": float(probe_ok),
        "published_ok": len(published),
        "refused_BrokerUnavailable": refused,
        "received": len(received),
        "accepted_but_not_delivered_live": accepted_not_received,
        "duplicates": len(received) - len(set(received)),
        "out_of_order": sum(1 for a, b in itertools.pairwise(received) if b <= a),
    }


async def main(messages: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory))
        await server.start()
        try:
            memory = MemoryBackend()
            await memory.connect()
            memory_rate = await throughput(memory, messages)
            await memory.disconnect()
            redis = RedisBackend(server.url, prefix=random_prefix())
            await redis.connect()
            redis_rate = await throughput(redis, messages)
            await redis.disconnect()
            print(f"throughput memory: {memory_rate:,.0f} msg/s")
            print(f"throughput redis:  {redis_rate:,.0f} msg/s")
            print(f"redis / memory:    {redis_rate / memory_rate:.3f}")
            for name, value in (await outage(server)).items():
                print(f"outage {name}: {value:g}")
        finally:
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    asyncio.run(main(parser.parse_args().messages))
