"""A connection's send queue: bounded, filled without waiting, drained by one writer.

Feeds and the connection's own reader `push` without ever blocking; the writer
`wait`s only when the queue is empty, so under load it is woken once per batch of
frames, not once per frame. When a consumer falls `maxsize` frames behind, the
queue is dropped at once (freeing what it held), marked `overflowed`, and its owner
is told, so the room never waits for one slow client.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Outbox(Generic[T]):
    __slots__ = ("_waiter", "items", "maxsize", "on_overflow", "overflowed")

    def __init__(self, maxsize: int, on_overflow: Callable[[], None] | None = None) -> None:
        self.maxsize = maxsize
        self.items: deque[T] = deque()
        self.overflowed = False
        self.on_overflow = on_overflow
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def push(self, item: T) -> bool:
        """Queue `item`; False if the consumer was dropped (now or before)."""
        if self.overflowed:
            return False
        if len(self.items) >= self.maxsize:
            self.overflowed = True
            self.items.clear()
            self._wake()
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        self.items.append(item)
        self._wake()
        return True

    def push_urgent(self, item: T) -> None:
        """Queue `item` ahead of everything, past the bound (for a closing frame)."""
        self.items.appendleft(item)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Return once there is something to take (or the outbox overflowed)."""
        while not self.items and not self.overflowed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
