"""One contract, every backend: the same tests on memory:// and on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from tests.support.brokers import random_prefix, require_shared_redis
from townsquare.platform.broker.base import BrokerBackend, BrokerClosed, Event
from townsquare.platform.broker.factory import create_backend

WAIT = 5.0  # seconds: a bound against hangs, never a measurement

MakeBackend = Callable[[], BrokerBackend]


@pytest.fixture(params=["memory", "redis"])
async def make_backend(request: pytest.FixtureRequest) -> MakeBackend:
    """A factory of unconnected backends of one kind (Redis: a fresh random prefix)."""
    if request.param == "memory":
        return lambda: create_backend("memory://")
    url = await require_shared_redis()
    prefix = random_prefix()
    return lambda: create_backend(url, prefix=prefix, timeout=2.0, backoff_max=0.5)


@pytest.fixture
async def backend(make_backend: MakeBackend) -> AsyncIterator[BrokerBackend]:
    broker = make_backend()
    await broker.connect()
    try:
        yield broker
    finally:
        await asyncio.wait_for(broker.disconnect(), WAIT)


async def receive(backend: BrokerBackend) -> Event:
    return await asyncio.wait_for(backend.next_event(), WAIT)


async def test_publish_after_subscribe_delivers_the_event(backend: BrokerBackend) -> None:
    await backend.subscribe("room:1")
    await backend.publish("room:1", b"hello")
    assert await receive(backend) == Event("room:1", b"hello")


async def test_publish_many_on_several_channels_keeps_order_per_channel(
    backend: BrokerBackend,
) -> None:
    channels = [f"room:{n}" for n in range(4)]
    for channel in channels:
        await backend.subscribe(channel)
    sent = {channel: [f"{channel}/{i}".encode() for i in range(50)] for channel in channels}
    for i in range(50):
        for channel in channels:
            await backend.publish(channel, sent[channel][i])

    received: dict[str, list[bytes]] = {channel: [] for channel in channels}
    for _ in range(50 * len(channels)):
        event = await receive(backend)
        received[event.channel].append(event.payload)
    assert received == sent


async def test_publish_many_delivers_the_batch_in_order_between_single_publishes(
    backend: BrokerBackend,
) -> None:
    await backend.subscribe("room:1")
    await backend.publish("room:1", b"before")
    await backend.publish_many("room:1", [f"batch/{i}".encode() for i in range(100)])
    await backend.publish_many("room:1", [])
    await backend.publish("room:1", b"after")
    payloads = [(await receive(backend)).payload for _ in range(102)]
    assert payloads == [b"before", *(f"batch/{i}".encode() for i in range(100)), b"after"]


async def test_unsubscribe_stops_delivery(backend: BrokerBackend) -> None:
    await backend.subscribe("gone")
    await backend.subscribe("kept")
    await backend.unsubscribe("gone")
    await backend.publish("gone", b"not for us")
    await backend.publish("kept", b"for us")
    # Had "gone" been delivered it would come first: same publisher, earlier.
    assert await receive(backend) == Event("kept", b"for us")


async def test_publish_to_a_channel_nobody_subscribed_is_dropped_quietly(
    backend: BrokerBackend,
) -> None:
    await backend.subscribe("heard")
    await backend.publish("nobody-listens", b"lost")
    await backend.publish("heard", b"kept")
    assert await receive(backend) == Event("heard", b"kept")


async def test_publish_large_payload_round_trips_intact(backend: BrokerBackend) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    await backend.subscribe("big")
    await backend.publish("big", payload)
    assert (await receive(backend)).payload == payload


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00", b"\r\n*1\r\n$4\r\nPING\r\n", bytes(range(256)), "é✓".encode()],
    ids=["empty", "nul", "protocol-lookalike", "all-bytes", "utf8"],
)
async def test_publish_binary_payload_round_trips_intact(
    backend: BrokerBackend, payload: bytes
) -> None:
    await backend.subscribe("bin")
    await backend.publish("bin", payload)
    assert await receive(backend) == Event("bin", payload)


async def test_subscribe_twice_delivers_once(backend: BrokerBackend) -> None:
    await backend.subscribe("twice")
    await backend.subscribe("twice")
    await backend.publish("twice", b"one")
    await backend.publish("twice", b"two")
    assert [await receive(backend), await receive(backend)] == [
        Event("twice", b"one"),
        Event("twice", b"two"),
    ]


async def test_unsubscribe_twice_or_unknown_channel_is_harmless(backend: BrokerBackend) -> None:
    await backend.unsubscribe("never-subscribed")
    await backend.subscribe("x")
    await backend.unsubscribe("x")
    await backend.unsubscribe("x")
    await backend.subscribe("x")
    await backend.publish("x", b"back")
    assert await receive(backend) == Event("x", b"back")


async def test_channel_names_with_any_characters_round_trip(backend: BrokerBackend) -> None:
    channel = "room:é ✓/*?[]"
    await backend.subscribe(channel)
    await backend.publish(channel, b"ok")
    assert await receive(backend) == Event(channel, b"ok")


async def test_is_healthy_follows_connect_and_disconnect(make_backend: MakeBackend) -> None:
    broker = make_backend()
    assert not broker.is_healthy()
    await broker.connect()
    try:
        assert broker.is_healthy()
        assert await broker.probe(WAIT)
    finally:
        await asyncio.wait_for(broker.disconnect(), WAIT)
    assert not broker.is_healthy()
    assert not await broker.probe(WAIT)


async def test_disconnect_wakes_a_waiting_next_event_with_broker_closed(
    make_backend: MakeBackend,
) -> None:
    broker = make_backend()
    await broker.connect()
    await broker.subscribe("quiet")
    waiters = [asyncio.create_task(broker.next_event()) for _ in range(2)]
    await asyncio.sleep(0.05)
    await asyncio.wait_for(broker.disconnect(), WAIT)
    for waiter in waiters:
        with pytest.raises(BrokerClosed):
            await asyncio.wait_for(waiter, WAIT)
    with pytest.raises(BrokerClosed):
        await asyncio.wait_for(broker.next_event(), WAIT)


async def test_disconnect_twice_then_connect_again_delivers(make_backend: MakeBackend) -> None:
    broker = make_backend()
    await broker.connect()
    await asyncio.wait_for(broker.disconnect(), WAIT)
    await asyncio.wait_for(broker.disconnect(), WAIT)
    await broker.connect()
    try:
        await broker.subscribe("again")
        await broker.publish("again", b"yes")
        assert await receive(broker) == Event("again", b"yes")
    finally:
        await asyncio.wait_for(broker.disconnect(), WAIT)


async def test_next_event_waiting_before_connect_receives_after_it(
    make_backend: MakeBackend,
) -> None:
    broker = make_backend()
    waiter = asyncio.create_task(broker.next_event())
    await broker.connect()
    try:
        await broker.subscribe("early")
        await broker.publish("early", b"seen")
        assert await asyncio.wait_for(waiter, WAIT) == Event("early", b"seen")
    finally:
        await asyncio.wait_for(broker.disconnect(), WAIT)
