"""The pool's queue serves waiting requests in arrival order (platform/pool.py)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

from townsquare.platform.database import create_database
from townsquare.platform.pool import FairAsyncQueuePool, FairQueue


async def _waiting(queue: FairQueue[str], count: int) -> None:
    """Until `count` getters wait on `queue` (event-loop turns, no clock)."""
    for _ in range(1000):
        if len(queue._waiters) == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(queue._waiters)} waiters, expected {count}")


def _get(queue: FairQueue[str] | AsyncAdaptedQueue[str], timeout: float = 5.0) -> asyncio.Task[str]:
    # The pool calls `get` from SQLAlchemy's greenlet, as here.
    return asyncio.ensure_future(greenlet_spawn(queue.get, True, timeout))


async def test_a_returned_connection_goes_to_the_oldest_waiter_not_to_a_newcomer() -> None:
    queue: FairQueue[str] = FairQueue(maxsize=2)
    first, second = _get(queue), _get(queue)
    await _waiting(queue, 2)
    queue.put_nowait("conn")
    # A request arriving now, before the woken waiter runs, finds nothing to take.
    with pytest.raises(Empty):
        queue.get_nowait()
    assert await first == "conn"
    assert not second.done()
    queue.put_nowait("conn")
    assert await second == "conn"


async def test_sqlalchemys_own_queue_lets_a_newcomer_take_it() -> None:
    # What FairQueue is for: the stock queue hands the connection to whoever asks first
    # after it came back, and its oldest waiter goes on waiting.
    queue: AsyncAdaptedQueue[str] = AsyncAdaptedQueue(maxsize=2)
    waiter = _get(queue)
    for _ in range(10):
        await asyncio.sleep(0)
    queue.put_nowait("conn")
    assert queue.get_nowait() == "conn"
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_waiter_times_out_with_empty_and_leaves_the_line() -> None:
    queue: FairQueue[str] = FairQueue(maxsize=1)
    with pytest.raises(Empty):
        await _get(queue, timeout=0.01)
    assert not queue._waiters
    queue.put_nowait("conn")
    assert queue.get_nowait() == "conn"


async def test_a_cancelled_waiter_passes_a_connection_it_was_handed_to_the_next() -> None:
    queue: FairQueue[str] = FairQueue(maxsize=1)
    first, second = _get(queue), _get(queue)
    await _waiting(queue, 2)
    queue.put_nowait("conn")  # handed to `first`...
    first.cancel()  # ...whose client left before it ran
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "conn"
    assert queue.qsize() == 0


async def test_a_connection_put_back_with_nobody_waiting_stays_in_the_queue() -> None:
    queue: FairQueue[str] = FairQueue(maxsize=1)
    queue.put_nowait("conn")
    assert queue.qsize() == 1
    assert await _get(queue) == "conn"


async def test_the_postgresql_engine_uses_the_fair_queue() -> None:
    database = create_database("postgresql+asyncpg://nobody@127.0.0.1:1/none", pool_size=3)
    try:
        assert isinstance(database.engine.pool, FairAsyncQueuePool)
        assert isinstance(database.engine.pool._pool, FairQueue)
    finally:
        await database.dispose()
