from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from townsquare.platform.broker.base import BrokerUnavailable, Event
from townsquare.platform.broker.hub import Hub, Mailbox, MailboxOverflow
from townsquare.platform.broker.memory import MemoryBackend


def _decode(channel: str, payload: bytes) -> str:
    return f"{channel}:{payload.decode()}"


class FlakyBackend(MemoryBackend):
    """A memory backend whose publish and next_event can be made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.healthy = True
        self.hang = False
        self.publish_calls = 0
        self.subscribe_calls: list[str] = []
        self.unsubscribe_calls: list[str] = []
        self.read_failures = 0

    async def subscribe(self, channel: str) -> None:
        self.subscribe_calls.append(channel)
        await super().subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.unsubscribe_calls.append(channel)
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
async def hub(backend: FlakyBackend) -> AsyncIterator[Hub[str]]:
    hub = Hub(backend, _decode)
    await hub.start()
    yield hub
    await hub.stop()


async def _drain(mailbox: Mailbox[str]) -> list[str]:
    await asyncio.sleep(0.01)  # let the hub's reader run
    items = []
    while len(mailbox):
        items.append(await mailbox.get())
    return items


async def test_publish_reaches_each_local_subscriber_once(
    hub: Hub[str], backend: FlakyBackend
) -> None:
    first, second, other = Mailbox[str](10), Mailbox[str](10), Mailbox[str](10)
    await hub.subscribe("a", first)
    await hub.subscribe("a", second)
    await hub.subscribe("b", other)
    await hub.publish("a", b"one")
    await hub.publish("a", b"two")
    # The backend echoes our own messages back; the hub must skip them.
    assert await _drain(first) == ["a:one", "a:two"]
    assert await _drain(second) == ["a:one", "a:two"]
    assert await _drain(other) == []


async def test_one_backend_subscription_per_channel(hub: Hub[str], backend: FlakyBackend) -> None:
    boxes = [Mailbox[str](10) for _ in range(5)]
    for box in boxes:
        await hub.subscribe("room", box)
    assert backend.subscribe_calls == ["room"]
    for box in boxes[:-1]:
        await hub.unsubscribe("room", box)
    assert backend.unsubscribe_calls == []
    await hub.unsubscribe("room", boxes[-1])
    await hub.unsubscribe("room", boxes[-1])  # twice is harmless
    assert backend.unsubscribe_calls == ["room"]
    assert hub.subscriber_count("room") == 0


async def test_messages_from_other_processes_are_delivered(
    hub: Hub[str], backend: FlakyBackend
) -> None:
    box = Mailbox[str](10)
    await hub.subscribe("a", box)
    await backend.publish("a", b"0123456789abcdef0123456789abcdef|1700000000.5|remote")
    await backend.publish("a", b"no tag at all")
    await backend.publish("a", b"0123456789abcdef0123456789abcdef|not-a-time|no stamp")
    assert await _drain(box) == ["a:remote"]


async def test_remote_messages_report_their_broker_lag(backend: FlakyBackend) -> None:
    import time

    lags: list[float] = []
    hub = Hub(backend, _decode, on_lag=lags.append)
    await hub.start()
    try:
        box = Mailbox[str](10)
        await hub.subscribe("a", box)
        sent = b"%.6f" % (time.time() - 2.0)
        await backend.publish("a", b"f" * 32 + b"|" + sent + b"|late")
        assert await asyncio.wait_for(box.get(), 5) == "a:late"
        assert len(lags) == 1
        assert 1.9 < lags[0] < 60
        await hub.publish("a", b"own")  # local delivery is not broker lag
        assert await asyncio.wait_for(box.get(), 5) == "a:own"
        await asyncio.sleep(0.05)
        assert len(lags) == 1
    finally:
        await hub.stop()


async def test_backend_down_still_delivers_locally(hub: Hub[str], backend: FlakyBackend) -> None:
    box = Mailbox[str](10)
    await hub.subscribe("a", box)
    backend.down = True
    await hub.publish("a", b"while down")  # does not raise
    assert await _drain(box) == ["a:while down"]


async def test_publish_with_backend_known_down_delivers_locally_without_waiting_on_it(
    hub: Hub[str], backend: FlakyBackend
) -> None:
    mailbox = Mailbox[str](10)
    await hub.subscribe("a", mailbox)
    backend.healthy, backend.hang = False, True
    await asyncio.wait_for(hub.publish("a", b"one"), 1)
    assert await _drain(mailbox) == ["a:one"]
    assert backend.publish_calls == 0
    # Healthy again: publishing through the backend resumes.
    backend.healthy, backend.hang = True, False
    await hub.publish("a", b"two")
    assert backend.publish_calls == 1


async def test_reader_survives_backend_read_failures(hub: Hub[str], backend: FlakyBackend) -> None:
    box = Mailbox[str](10)
    await hub.subscribe("a", box)
    backend.read_failures = 2
    await backend.publish("a", b"ffffffffffffffffffffffffffffffff|1700000000|later")
    assert await asyncio.wait_for(box.get(), 10) == "a:later"
    assert hub.is_healthy()


async def test_full_mailbox_overflows_without_blocking_others(hub: Hub[str]) -> None:
    slow, fast = Mailbox[str](3), Mailbox[str](1000)
    overflowed = []
    slow.on_overflow = lambda: overflowed.append(True)
    await hub.subscribe("a", slow)
    await hub.subscribe("a", fast)
    for index in range(100):
        await hub.publish("a", str(index).encode())
        assert len(slow) <= slow.maxsize  # memory for the slow one stays bounded
    assert overflowed == [True]
    assert len(slow) == 0  # what it held was released at once
    with pytest.raises(MailboxOverflow):
        await slow.get()
    assert len(await _drain(fast)) == 100


async def test_mailbox_get_waits_for_an_item() -> None:
    box = Mailbox[str](2)
    waiter = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.offer("x")
    assert await asyncio.wait_for(waiter, 1) == "x"
