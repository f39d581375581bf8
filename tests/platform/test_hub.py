from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from townsquare.platform.broker.base import BrokerUnavailable, Event
from townsquare.platform.broker.envelope import Envelope
from townsquare.platform.broker.hub import Hub
from townsquare.platform.broker.memory import MemoryBackend

OTHER = "f" * 32  # another process's instance id


class FlakyBackend(MemoryBackend):
    """A memory backend whose publish and next_event can be made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.healthy = True
        self.hang = False
        self.hang_subscribe = False
        self.swallow_cancel = False
        self.publish_calls = 0
        self.subscribe_calls: list[str] = []
        self.unsubscribe_calls: list[str] = []
        self.read_failures = 0

    async def subscribe(self, channel: str) -> None:
        self.subscribe_calls.append(channel)
        if self.hang_subscribe:  # a frozen Redis
            await asyncio.Event().wait()
        await super().subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.unsubscribe_calls.append(channel)
        if self.swallow_cancel:
            # What asyncio.timeout can do when a cancellation and its own deadline meet
            # inside a backend call: the cancellation comes out as a TimeoutError.
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise TimeoutError() from None
        await super().unsubscribe(channel)

    def is_healthy(self) -> bool:
        return self.healthy

    async def publish(self, channel: str, payload: bytes) -> None:
        self.publish_calls += 1
        if self.hang:  # a frozen Redis: the call would wait out its timeout
            await asyncio.Event().wait()
        if self.down:
            raise BrokerUnavailable("down")
        await super().publish(channel, payload)

    async def next_event(self) -> Event:
        if self.read_failures:
            self.read_failures -= 1
            raise ConnectionError("listener died")
        return await super().next_event()


@pytest.fixture
async def backend() -> FlakyBackend:
    return FlakyBackend()


@pytest.fixture
async def hub(backend: FlakyBackend) -> AsyncIterator[Hub]:
    hub = Hub(backend, subscribe_timeout=0.5)
    await hub.start()
    yield hub
    await hub.stop()


class Collector:
    """A channel handler that records bodies and lets a test wait for them."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.arrived = asyncio.Queue[str]()

    def __call__(self, envelope: Envelope) -> None:
        self.bodies.append(envelope.body)
        self.arrived.put_nowait(envelope.body)

    async def until(self, body: str, within: float = 5) -> list[str]:
        async with asyncio.timeout(within):
            while await self.arrived.get() != body:
                pass
        return self.bodies


def remote(body: str, seq: int | None = None, published_at: float = 1700000000.5) -> bytes:
    return Envelope(origin=OTHER, body=body, seq=seq, published_at=published_at).encode()


async def test_publish_reaches_the_local_handler_once(hub: Hub, backend: FlakyBackend) -> None:
    first, other = Collector(), Collector()
    await hub.subscribe("a", first)
    await hub.subscribe("b", other)
    await hub.publish("a", hub.envelope("one"))
    await hub.publish("a", hub.envelope("two", seq=2))
    # The backend echoes our own envelopes back; the hub skips them. A message from
    # another process, published after them, marks the end of the echoes.
    await backend.publish("a", remote("end"))
    assert await first.until("end") == ["one", "two", "end"]
    assert other.bodies == []


async def test_envelope_round_trips_through_its_encoding() -> None:
    envelope = Envelope(origin="abc", body='{"x": "é\n"}', seq=7, published_at=12.5)
    decoded = Envelope.decode(envelope.encode())
    assert (decoded.origin, decoded.body, decoded.seq, decoded.published_at) == (
        "abc",
        '{"x": "é\n"}',
        7,
        12.5,
    )
    assert Envelope.decode(Envelope(origin="abc", body="", seq=None).encode()).seq is None


async def test_one_handler_and_one_backend_subscription_per_channel(
    hub: Hub, backend: FlakyBackend
) -> None:
    handler = Collector()
    await hub.subscribe("room", handler)
    with pytest.raises(RuntimeError):
        await hub.subscribe("room", Collector())
    await hub.unsubscribe("room", Collector())  # not the channel's handler: ignored
    assert backend.subscribe_calls == ["room"]
    assert backend.unsubscribe_calls == []
    await hub.unsubscribe("room", handler)
    await hub.unsubscribe("room", handler)  # twice is harmless
    assert backend.unsubscribe_calls == ["room"]
    assert hub.channels() == 0


async def test_subscribe_and_unsubscribe_back_to_back_leave_the_backend_as_asked(
    hub: Hub, backend: FlakyBackend
) -> None:
    first, second = Collector(), Collector()
    # Without waiting in between: the changes are applied in order, the last one wins.
    await asyncio.gather(
        hub.subscribe("a", first),
        hub.unsubscribe("a", first),
        hub.subscribe("a", second),
    )
    await backend.publish("a", remote("later"))
    assert await second.until("later") == ["later"]
    assert first.bodies == []


async def test_frozen_backend_subscribe_stalls_neither_publishers_nor_other_channels(
    hub: Hub, backend: FlakyBackend
) -> None:
    held = Collector()
    await hub.subscribe("held", held)
    backend.hang_subscribe = True
    joining = asyncio.create_task(hub.subscribe("new", Collector()))
    await asyncio.sleep(0)  # the subscribe is now stuck in the backend
    assert not joining.done()
    # Meanwhile everything else goes on at once.
    await asyncio.wait_for(hub.publish("held", hub.envelope("now")), 0.2)
    await asyncio.wait_for(hub.unsubscribe("held", held), 0.6)
    assert held.bodies == ["now"]
    # The stuck subscribe gives up waiting after the subscribe timeout; local delivery
    # to the new channel works already.
    await asyncio.wait_for(joining, 2)


async def test_messages_from_other_processes_are_delivered(hub: Hub, backend: FlakyBackend) -> None:
    handler = Collector()
    await hub.subscribe("a", handler)
    await backend.publish("a", remote("remote", seq=3))
    await backend.publish("a", b"not an envelope")
    await backend.publish("a", b"x not-a-time -\nbody")
    await backend.publish("a", remote("last"))
    assert await handler.until("last") == ["remote", "last"]


async def test_remote_messages_report_their_broker_lag(backend: FlakyBackend) -> None:
    import time

    lags: list[float] = []
    hub = Hub(backend, on_lag=lags.append)
    await hub.start()
    try:
        handler = Collector()
        await hub.subscribe("a", handler)
        await backend.publish("a", remote("late", published_at=time.time() - 2.0))
        await handler.until("late")
        assert len(lags) == 1
        assert 1.9 < lags[0] < 60
        await hub.publish("a", hub.envelope("own"))  # local delivery is not broker lag
        await backend.publish("a", remote("marker", published_at=time.time()))
        await handler.until("marker")
        assert len(lags) == 2
    finally:
        await hub.stop()


async def test_backend_down_still_delivers_locally(hub: Hub, backend: FlakyBackend) -> None:
    handler = Collector()
    await hub.subscribe("a", handler)
    backend.down = True
    await hub.publish("a", hub.envelope("while down"))  # does not raise
    assert handler.bodies == ["while down"]


async def test_publish_with_backend_known_down_delivers_locally_without_waiting_on_it(
    hub: Hub, backend: FlakyBackend
) -> None:
    handler = Collector()
    await hub.subscribe("a", handler)
    backend.healthy, backend.hang = False, True
    await asyncio.wait_for(hub.publish("a", hub.envelope("one")), 1)
    assert handler.bodies == ["one"]
    assert backend.publish_calls == 0
    # Healthy again: publishing through the backend resumes.
    backend.healthy, backend.hang = True, False
    await hub.publish("a", hub.envelope("two"))
    assert backend.publish_calls == 1


async def test_reader_survives_backend_read_failures(hub: Hub, backend: FlakyBackend) -> None:
    handler = Collector()
    await hub.subscribe("a", handler)
    backend.read_failures = 2
    await backend.publish("a", remote("later"))
    await handler.until("later", within=10)
    assert hub.is_healthy()


async def test_unsubscribe_with_a_bound_method_handler_frees_the_channel(hub: Hub) -> None:
    class Feed:
        def __init__(self) -> None:
            self.bodies: list[str] = []

        def on_envelope(self, envelope: Envelope) -> None:
            self.bodies.append(envelope.body)

    first, second = Feed(), Feed()
    await hub.subscribe("room", first.on_envelope)
    # A bound method is a new object at every access: the hub must still recognize it.
    await hub.unsubscribe("room", first.on_envelope)
    await hub.subscribe("room", second.on_envelope)
    await hub.publish("room", hub.envelope("hello"))
    assert (first.bodies, second.bodies) == ([], ["hello"])


async def test_stop_ends_even_when_a_backend_call_swallows_the_cancellation(
    backend: FlakyBackend,
) -> None:
    hub = Hub(backend, subscribe_timeout=0.2)
    await hub.start()
    handler = Collector()
    await hub.subscribe("room", handler)
    backend.swallow_cancel = True
    hub.detach("room", handler)  # the backend unsubscribe now runs, and hangs
    await asyncio.sleep(0)
    assert backend.unsubscribe_calls == ["room"]
    stopping = asyncio.create_task(hub.stop())
    done, _ = await asyncio.wait([stopping], timeout=3)
    if not done:  # (clean up before failing: the old hub would wait forever)
        backend.swallow_cancel = False
        stopping.cancel()
    assert done, "hub.stop() hung on a task that took its cancellation for a timeout"
