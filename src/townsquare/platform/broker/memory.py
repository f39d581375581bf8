"""The one-process backend: a queue. Also the test double for the Redis backend."""

from __future__ import annotations

import asyncio

from townsquare.platform.broker.base import Event


class MemoryBackend:
    def __init__(self) -> None:
        self._channels: set[str] = set()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._connected = False

    async def connect(self) -> None:
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(self, channel: str, payload: bytes) -> None:
        if channel in self._channels:
            self._events.put_nowait(Event(channel, payload))

    async def next_event(self) -> Event:
        return await self._events.get()

    def is_healthy(self) -> bool:
        return self._connected
