"""What `Client.events()` yields besides room messages: the connection's ups and
downs, presence, typing, removals from rooms, and the server's `error` notices that
no call of the caller's is waiting for (`rate_limited`, `token_expired`, ...)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from townsquare.rooms.protocol import (
    ErrorFrame,
    LeftFrame,
    PresenceFrame,
    TypingEventFrame,
    WelcomeFrame,
)


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is up and authenticated (the first one, or after a reconnect)."""

    welcome: WelcomeFrame
    reconnect: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection is gone; the client reconnects unless `final`.

    `code` is the close code (None when the connection died without one), `reason`
    says what happened in words (the close reason, `bye`, or "heartbeat timeout")."""

    code: int | None
    reason: str
    final: bool = False


Event = Connected | Disconnected | PresenceFrame | TypingEventFrame | LeftFrame | ErrorFrame


class EventQueue:
    """Bounded: when the consumer falls behind, the oldest events are dropped (and
    counted); these are notices, the room messages themselves are never dropped."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Event] = deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def put(self, event: Event) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(event)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def get(self) -> Event | None:
        """The next event, or None once closed and drained."""
        while not self._items:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()
