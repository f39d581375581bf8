"""Pool connections kept between one-statement reads, so that a read costs its round
trip and not also a checkout and a checkin.

A `DirectRead` (platform/database.py) is one statement on a raw asyncpg connection. Taking
that connection from SQLAlchemy's pool and giving it back (a greenlet, the pool's
bookkeeping, the reset on return) costs about as much CPU as asyncpg's whole round trip
(measured: ~65 us per read against ~25 us), on every authenticated request.

`LeasedConnections` borrows connections from the engine's pool for reads and keeps them
while reads keep coming: a finished read hands its connection straight to the next one.
Nothing else loses a connection to it:

- as soon as anything else (an ORM session, a write, a migration check) waits for a pool
  connection, idle borrowed connections go back at once and busy ones when their
  statement ends (`FairQueue.on_wait`, platform/pool.py);
- a connection no read used for `idle_seconds` goes back;
- reads borrow at most the pool's size; beyond it they queue, first come first served,
  and a read that waits longer than the pool's timeout fails as a checkout would
  (`sqlalchemy.exc.TimeoutError`, answered 503);
- a connection that broke, or whose statement was interrupted (a cancelled request), is
  closed and never handed out again; one the server closed while it sat idle is dropped
  before use, so a database restart costs no request.

Everything runs on the event loop's thread; no lock is held across an await.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import asyncpg
from sqlalchemy.engine import Engine
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from townsquare.platform.errors import DatabaseUnavailable
from townsquare.platform.pool import FairQueue

logger = logging.getLogger(__name__)

# What asyncpg raises when the connection itself failed: the server went away, the socket
# broke, or the protocol was caught mid-operation.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class _Expired(Exception):
    pass


def _expire(waiter: asyncio.Future[PoolProxiedConnection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


def _driver(raw: PoolProxiedConnection) -> asyncpg.Connection:
    return cast(asyncpg.Connection, raw.driver_connection)


def _check_in(raw: PoolProxiedConnection) -> None:
    raw.close()


def _invalidate(raw: PoolProxiedConnection, exc: BaseException | None) -> None:
    raw.invalidate(exc if isinstance(exc, Exception) else None)
    raw.close()


class LeasedConnections:
    """Connections of `engine`'s pool, borrowed for one-statement reads (see the module)."""

    def __init__(self, engine: Engine, *, idle_seconds: float = 1.0) -> None:
        self._engine = engine
        self._idle_seconds = idle_seconds
        self._limit: int = engine.pool.size()  # type: ignore[attr-defined]
        self._timeout: float = engine.pool.timeout()  # type: ignore[attr-defined]
        # Borrowed connections (busy or idle) plus slots promised to waiting reads.
        self._borrowed = 0
        # Idle borrowed connections with the loop time each came back, oldest first.
        self._idle: list[tuple[PoolProxiedConnection, float]] = []
        # Reads waiting for a connection: each gets one, or None (a slot: borrow one).
        # Invariant: idle connections and live waiters never coexist.
        self._waiters: deque[asyncio.Future[PoolProxiedConnection | None]] = deque()
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._yield_scheduled = False
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def borrowed(self) -> int:
        """Connections borrowed from the pool now (or promised to a waiting read)."""
        return self._borrowed

    async def run(self, method: str, sql: str, args: Sequence[Any]) -> Any:
        """`method` (fetch, fetchrow, ...) of asyncpg's connection, on a borrowed one."""
        raw = await self._acquire()
        try:
            result = await getattr(_driver(raw), method)(sql, *args)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, asyncpg.PostgresConnectionError):
                self._discard(raw, exc)
                raise DatabaseUnavailable() from exc
            # The server refused the statement; the connection is as good as before.
            self._release(raw)
            raise
        except CONNECTION_ERRORS as exc:
            self._discard(raw, exc)
            raise DatabaseUnavailable() from exc
        except BaseException as exc:
            # Cancelled mid-statement (or worse): the connection's state is unknown.
            self._discard(raw, exc)
            raise
        self._release(raw)
        return result

    async def close(self) -> None:
        """Give every borrowed connection back (at shutdown, before the pool closes).
        Reads still running give theirs back when they end."""
        self._closed = True
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        self._yield_idle()
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- taking and giving back ---------------------------------------------------------

    async def _acquire(self) -> PoolProxiedConnection:
        idle = self._idle
        while idle:
            raw, _ = idle.pop()
            if not _driver(raw).is_closed():
                return raw
            # The server closed it while it sat here (a restart, an idle timeout).
            self._borrowed -= 1
            self._spawn(_invalidate, raw, None)
        if self._borrowed < self._limit or self._closed:
            self._borrowed += 1
            return await self._borrow()
        return await self._wait()

    async def _borrow(self) -> PoolProxiedConnection:
        """A connection from the pool, for a slot already counted in `_borrowed`."""
        try:
            # A connection the server closed since it went into the pool is dropped, not
            # used; after as many as the pool holds, the statement is left to fail.
            for _ in range(self._limit):
                raw = await greenlet_spawn(self._engine.raw_connection)
                self._watch_pool()
                if not _driver(raw).is_closed():
                    return raw
                self._spawn(_invalidate, raw, None)
            return await greenlet_spawn(self._engine.raw_connection)
        except BaseException:
            self._free_slot()
            raise

    async def _wait(self) -> PoolProxiedConnection:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[PoolProxiedConnection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self._timeout, _expire, waiter)
        try:
            handed = await waiter
        except _Expired:
            raise PoolTimeout(
                f"no connection for a read within the pool timeout ({self._timeout:g} s): "
                f"all {self._limit} borrowed by reads"
            ) from None
        except BaseException:
            # Cancelled (its client left): what it was handed goes to the next in line.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                passed = waiter.result()
                if passed is None:
                    self._free_slot()
                else:
                    self._release(passed)
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if handed is None:
            return await self._borrow()
        return handed

    def _release(self, raw: PoolProxiedConnection) -> None:
        if self._closed or self._pool_waiting():
            self._give_back(raw)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(raw)
                return
        loop = asyncio.get_running_loop()
        self._idle.append((raw, loop.time()))
        if self._sweep_timer is None:
            self._sweep_timer = loop.call_later(self._idle_seconds, self._sweep)

    def _free_slot(self) -> None:
        """A borrowed connection is gone: its slot goes to the oldest waiting read."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._borrowed -= 1

    def _give_back(self, raw: PoolProxiedConnection) -> None:
        self._spawn(_check_in, raw)
        self._free_slot()

    def _discard(self, raw: PoolProxiedConnection, exc: BaseException) -> None:
        # Closed at once, so nothing can use it meanwhile; the pool's record of it is
        # invalidated (the next checkout opens a new one) in the background.
        _driver(raw).terminate()
        self._spawn(_invalidate, raw, exc)
        self._free_slot()

    # -- handing idle connections back ---------------------------------------------------

    def _pool_queue(self) -> FairQueue[Any] | None:
        queue = getattr(self._engine.pool, "_pool", None)
        return queue if isinstance(queue, FairQueue) else None

    def _pool_waiting(self) -> bool:
        queue = self._pool_queue()
        return queue is not None and queue.waiting()

    def _watch_pool(self) -> None:
        queue = self._pool_queue()
        if queue is not None and queue.on_wait is None:
            queue.on_wait = self._on_pool_wait

    def _on_pool_wait(self) -> None:
        # Called inside the waiting checkout's greenlet: give back on the next turn.
        if self._idle and not self._yield_scheduled:
            self._yield_scheduled = True
            asyncio.get_running_loop().call_soon(self._yield_idle)

    def _yield_idle(self) -> None:
        self._yield_scheduled = False
        idle, self._idle = self._idle, []
        for raw, _ in idle:
            self._give_back(raw)

    def _sweep(self) -> None:
        self._sweep_timer = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self._idle_seconds
        expired = 0
        while expired < len(self._idle) and self._idle[expired][1] <= cutoff:
            expired += 1
        stale, self._idle = self._idle[:expired], self._idle[expired:]
        for raw, _ in stale:
            self._give_back(raw)
        if self._idle:
            delay = self._idle[0][1] + self._idle_seconds - loop.time()
            self._sweep_timer = loop.call_later(max(delay, 0.0), self._sweep)

    def _spawn(self, function: Any, *args: Any) -> None:
        task = asyncio.get_running_loop().create_task(greenlet_spawn(function, *args))
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.warning("returning a database connection to the pool failed: %r", exc)
