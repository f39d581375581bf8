"""Faults against a private redis-server (stopped and started by PID, never the shared one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.brokers import RedisServer, eventually, random_prefix
from townsquare.platform.broker.base import BrokerClosed, BrokerUnavailable
from townsquare.platform.broker.redis import RedisBackend

WAIT = 15.0  # seconds: a bound against hangs, never a measurement
LOGGER = "townsquare.platform.broker.redis"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    redis_server = RedisServer(tmp_path)
    try:
        yield redis_server
    finally:
        redis_server.thaw()
        await redis_server.stop()


def make_backend(server: RedisServer) -> RedisBackend:
    # Short timers so each fault resolves in about a second.
    return RedisBackend(
        server.url,
        prefix=random_prefix(),
        timeout=0.5,
        backoff_initial=0.05,
        backoff_max=0.5,
        keepalive=0.5,
    )


@dataclass
class Traffic:
    """A publisher and a consumer of numbered messages on one channel."""

    backend: RedisBackend
    channel: str = "stream"
    published: list[int] = field(default_factory=list)
    refused: int = 0
    received: list[int] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._produce()), asyncio.create_task(self._consume())]

    async def _produce(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            try:
                await self.backend.publish(self.channel, str(number).encode())
                self.published.append(number)
            except BrokerUnavailable:
                self.refused += 1
            await asyncio.sleep(0.005)

    async def _consume(self) -> None:
        with contextlib.suppress(BrokerClosed):
            while True:
                event = await self.backend.next_event()
                self.received.append(int(event.payload))

    @property
    def consumer_alive(self) -> bool:
        return not self._tasks[1].done()

    async def stop_publishing(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._tasks[0], WAIT)

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_redis_killed_during_traffic_backend_reconnects_and_delivers_again(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    await server.start()
    backend = make_backend(server)
    await backend.connect()
    traffic = Traffic(backend)
    try:
        assert backend.is_healthy()
        await backend.subscribe(traffic.channel)
        traffic.start()
        assert await eventually(lambda: len(traffic.received) >= 50, WAIT)

        await server.stop()
        assert await eventually(lambda: not backend.is_healthy(), WAIT)
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(backend.publish("elsewhere", b"x"), WAIT)
        assert not await backend.probe(1.0)
        assert await eventually(lambda: traffic.refused >= 5, WAIT)

        await server.start()
        assert await eventually(backend.is_healthy, WAIT)
        assert await backend.probe(WAIT)
        recovered_at = len(traffic.published)
        assert await eventually(lambda: len(traffic.published) >= recovered_at + 50, WAIT)
        await traffic.stop_publishing()
        last = traffic.published[-1]
        assert await eventually(
            lambda: bool(traffic.received) and traffic.received[-1] == last, WAIT
        )

        assert traffic.consumer_alive
        assert traffic.received == sorted(set(traffic.received)), "out of order or doubled"
        assert set(traffic.published[recovered_at:]) <= set(traffic.received)
        assert backend.reconnects >= 1
        messages = [record.getMessage() for record in caplog.records if record.name == LOGGER]
        assert any("connection lost" in message for message in messages)
        assert any("reconnected" in message for message in messages)
        assert not [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
    finally:
        await traffic.close()
        await asyncio.wait_for(backend.disconnect(), WAIT)


async def test_redis_frozen_backend_notices_the_silence_and_recovers(
    server: RedisServer,
) -> None:
    await server.start()
    backend = make_backend(server)
    await backend.connect()
    try:
        await backend.subscribe("room")
        server.freeze()  # sockets stay open, nothing answers
        assert await eventually(lambda: not backend.is_healthy(), WAIT)
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(backend.publish("room", b"x"), WAIT)

        server.thaw()
        assert await eventually(backend.is_healthy, WAIT)
        assert await backend.probe(WAIT)
        await backend.publish("room", b"after")
        event = await asyncio.wait_for(backend.next_event(), WAIT)
        assert (event.channel, event.payload) == ("room", b"after")
    finally:
        await asyncio.wait_for(backend.disconnect(), WAIT)


async def test_publish_timing_out_on_frozen_redis_turns_unhealthy_at_once(
    server: RedisServer,
) -> None:
    await server.start()
    # A keepalive far longer than the test: only the failed publish can tell.
    backend = RedisBackend(server.url, prefix=random_prefix(), timeout=0.5, keepalive=60)
    await backend.connect()
    try:
        await backend.subscribe("room")
        server.freeze()
        assert backend.is_healthy()
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(backend.publish("room", b"x"), WAIT)
        assert not backend.is_healthy()
        server.thaw()
        assert await eventually(backend.is_healthy, WAIT)
        assert await backend.probe(WAIT)
    finally:
        server.thaw()
        await asyncio.wait_for(backend.disconnect(), WAIT)


async def test_connect_while_redis_is_down_becomes_healthy_when_it_starts(
    server: RedisServer,
) -> None:
    backend = make_backend(server)
    await asyncio.wait_for(backend.connect(), WAIT)  # returns, does not raise
    try:
        assert not backend.is_healthy()
        await asyncio.wait_for(backend.subscribe("early"), WAIT)
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(backend.publish("early", b"x"), WAIT)

        await server.start()
        assert await eventually(backend.is_healthy, WAIT)
        await backend.publish("early", b"subscribed on reconnect")
        event = await asyncio.wait_for(backend.next_event(), WAIT)
        assert event.payload == b"subscribed on reconnect"
    finally:
        await asyncio.wait_for(backend.disconnect(), WAIT)


async def test_disconnect_during_an_outage_returns_and_wakes_the_consumer(
    server: RedisServer,
) -> None:
    await server.start()
    backend = make_backend(server)
    await backend.connect()
    waiter = asyncio.create_task(backend.next_event())
    await server.stop()
    assert await eventually(lambda: not backend.is_healthy(), WAIT)
    await asyncio.wait_for(backend.disconnect(), WAIT)
    with pytest.raises(BrokerClosed):
        await asyncio.wait_for(waiter, WAIT)
    assert await eventually(lambda: not _listeners_running(), WAIT)


def _listeners_running() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name() == "redis-broker-listener" and not task.done()
    ]


async def test_probe_after_redis_returns_reconnects_at_once_despite_a_long_backoff(
    server: RedisServer,
) -> None:
    # Started while Redis is down, as a restarted instance during an outage is: its
    # listener fails and then waits out a backoff of 5 to 10 s here (a long outage
    # grows it to BROKER_BACKOFF_MAX_SECONDS).
    backend = RedisBackend(
        server.url,
        prefix=random_prefix(),
        timeout=0.5,
        backoff_initial=10.0,
        backoff_max=10.0,
        keepalive=0.5,
    )
    await backend.connect()
    try:
        assert not backend.is_healthy()
        assert not await backend.probe(within=1.0)  # still down: one attempt, refused
        await server.start()
        # The first probe after Redis is back wakes the listener out of its backoff.
        assert await backend.probe(within=3.0)
        assert backend.is_healthy()
    finally:
        await backend.disconnect()
