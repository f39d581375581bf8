"""A connection pool that serves waiting requests first come, first served.

SQLAlchemy's asyncio pool keeps its idle connections in an `asyncio.Queue`. When a
connection comes back, the queue wakes its oldest waiter, but the waiter runs only on a
later turn of the event loop; meanwhile any request that asks for a connection takes it
at once ("barging"), and the woken waiter, finding the queue empty again, queues up
behind everyone else. Under sustained load a few requests lose that race over and over:
with 50 clients and 10 connections some waited the whole pool timeout (5 s) and were
answered 503 while the pool was busy serving newer requests.

`FairQueue` hands a returned connection straight to the oldest waiter, and a request
that finds anyone waiting queues behind them. Nobody waits longer than the requests
ahead of it take, so a pool under load stays a queue, not a lottery.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_
from sqlalchemy.util.queue import Empty, Full, QueueCommon

T = TypeVar("T")


class _TimedOut(Exception):
    pass


def _time_out(waiter: asyncio.Future[T]) -> None:
    if not waiter.done():
        waiter.set_exception(_TimedOut())


class FairQueue(QueueCommon[T]):
    """The pool's queue of idle connections, with waiters served in arrival order.

    Invariant: items and live waiters never coexist. An item put while someone waits
    goes to the oldest live waiter; a getter finding items takes one at once (nobody
    can be waiting then).
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()
        # Called (synchronously, once per getter) when a getter starts waiting: what
        # holds connections outside the queue (platform/leases.py) gives idle ones back.
        self.on_wait: Callable[[], None] | None = None

    def waiting(self) -> bool:
        """Whether a getter waits for a connection."""
        return bool(self._waiters) and any(not waiter.done() for waiter in self._waiters)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return self.maxsize > 0 and len(self._items) >= self.maxsize

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        # Returning a connection never has to wait: the pool holds at most maxsize.
        self.put_nowait(item)

    def get_nowait(self) -> T:
        if not self._items:
            raise Empty()
        return self._items.pop() if self.use_lifo else self._items.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if self._items:
            return self.get_nowait()
        if not block:
            raise Empty()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._waiters.append(waiter)
        if self.on_wait is not None:
            self.on_wait()
        timer = loop.call_later(timeout, _time_out, waiter) if timeout is not None else None
        try:
            return await_(waiter)
        except _TimedOut:
            raise Empty() from None
        except BaseException:
            # The waiting request was cancelled (its client left). If a connection was
            # handed to it in the meantime, it goes to the next in line, not astray.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.put_nowait(waiter.result())
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not waiter.done():
                waiter.cancel()
            if self._waiters and waiter in self._waiters:
                self._waiters.remove(waiter)


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio pool with `FairQueue` for its idle connections."""

    _queue_class: type[QueueCommon[ConnectionPoolEntry]] = FairQueue
