"""The one-process backend: a queue. Also the test double for the Redis backend."""

from __future__ import annotations

import asyncio

from townsquare.platform.broker.base import BrokerClosed, Event


class MemoryBackend:
    def __init__(self) -> None:
        self._channels: set[str] = set()
        # `None` is the closing mark: it wakes every `next_event` waiting at disconnect.
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._connected = False
        self._closed = False

    async def connect(self) -> None:
        if self._closed:  # connected again after a disconnect: drop the closing mark
            self._events = asyncio.Queue()
            self._closed = False
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False
        self._channels.clear()
        if not self._closed:
            self._closed = True
            self._events.put_nowait(None)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(self, channel: str, payload: bytes) -> None:
        if channel in self._channels:
            self._events.put_nowait(Event(channel, payload))

    async def publish_many(self, channel: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            await self.publish(channel, payload)

    async def next_event(self) -> Event:
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # for the next waiter
            raise BrokerClosed("the broker was disconnected")
        return event

    def is_healthy(self) -> bool:
        return self._connected

    async def probe(self, within: float) -> bool:
        return self._connected
