"""Local fan-out above a broker backend.

One backend subscription per channel per process however many local subscribers it
has (refcounted), and one reader task that pulls `next_event()` and hands each event,
decoded once, to every local subscriber's bounded mailbox.

A message published here is delivered to this process's subscribers at once, before
it goes to the backend; the copy that comes back from the backend carries this hub's
instance tag and is skipped. So local delivery goes on while the backend is down, and
a local subscriber never gets one message twice. A full mailbox never blocks the hub:
it is marked overflowed and its consumer is told to give up (a WebSocket closes 1013).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from townsquare.platform.broker.base import BrokerBackend, BrokerUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

_SEPARATOR = b"|"
_RETRY_FIRST, _RETRY_MAX = 0.05, 2.0


class MailboxOverflow(Exception):
    """The consumer fell `maxsize` items behind and was dropped."""


class Sink(Protocol[T_contra]):
    def offer(self, item: T_contra) -> bool:
        """Take `item` without blocking; False when it cannot (and never will)."""


class Mailbox(Generic[T]):
    """A bounded queue that one consumer drains. `offer` never waits: when the queue is
    full the mailbox is marked overflowed, `overflowed` is set, and `get` raises."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()
        self.overflowed = asyncio.Event()
        # Called once, when the mailbox overflows, so its owner can act at once even
        # while its consumer is stuck (for example in a send to a client not reading).
        self.on_overflow: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> bool:
        if self.overflowed.is_set():
            return False
        if len(self._items) >= self.maxsize:
            self._items.clear()  # the consumer is dropped; free what it holds now
            self.overflowed.set()
            self._ready.set()
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        self._items.append(item)
        self._ready.set()
        return True

    async def get(self) -> T:
        while True:
            if self.overflowed.is_set():
                raise MailboxOverflow()
            if self._items:
                return self._items.popleft()
            self._ready.clear()
            await self._ready.wait()


class Hub(Generic[T]):
    def __init__(
        self,
        backend: BrokerBackend,
        decode: Callable[[str, bytes], T],
        *,
        instance_id: str | None = None,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.backend = backend
        self._decode = decode
        self.instance_id = instance_id or uuid.uuid4().hex
        self._tag = self.instance_id.encode() + _SEPARATOR
        # Told the seconds from publication (by any process) to this hub's read.
        self._on_lag = on_lag
        self._subscribers: dict[str, set[Sink[T]]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._local_only = False  # publishing skipped while the backend is known down

    async def start(self) -> None:
        try:
            await self.backend.connect()
        except Exception:
            # The service starts anyway: local delivery needs no backend, and the
            # reader keeps trying.
            logger.warning("broker backend unavailable at start", exc_info=True)
        self._reader = asyncio.create_task(self._read(), name="broker-hub-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        with contextlib.suppress(Exception):
            await self.backend.disconnect()

    def is_healthy(self) -> bool:
        reading = self._reader is not None and not self._reader.done()
        return reading and self.backend.is_healthy()

    def subscriber_count(self, channel: str) -> int:
        return len(self._subscribers.get(channel, ()))

    async def subscribe(self, channel: str, sink: Sink[T]) -> None:
        async with self._lock:
            sinks = self._subscribers.get(channel)
            if sinks is None:
                sinks = self._subscribers[channel] = set()
                try:
                    await self.backend.subscribe(channel)
                except Exception:
                    # Local subscribers still get local messages; the backend is
                    # expected to restore its subscriptions when it reconnects.
                    logger.warning("broker subscribe to %s failed", channel, exc_info=True)
            sinks.add(sink)

    async def unsubscribe(self, channel: str, sink: Sink[T]) -> None:
        async with self._lock:
            sinks = self._subscribers.get(channel)
            if sinks is None or sink not in sinks:
                return
            sinks.discard(sink)
            if not sinks:
                del self._subscribers[channel]
                try:
                    await self.backend.unsubscribe(channel)
                except Exception:
                    logger.warning("broker unsubscribe from %s failed", channel, exc_info=True)

    async def publish(self, channel: str, payload: bytes) -> None:
        """Deliver to this process now, then to the others through the backend. A
        backend failure is logged, not raised: the message is already stored, and
        other processes' clients recover it from history."""
        self._fan_out(channel, self._decode(channel, payload))
        if not self.backend.is_healthy():
            # Known down (its listener lost the connection): do not make every sender
            # wait out a publish timeout against a Redis that is frozen or unreachable.
            # The message is stored; other processes fill the hole from history.
            if not self._local_only:
                self._local_only = True
                logger.warning("broker down; delivering in this process only until it is back")
            return
        if self._local_only:
            self._local_only = False
            logger.warning("broker back; publishing to other processes again")
        try:
            # <instance>|<unix time>|<payload>: the time measures broker lag.
            stamp = b"%.6f" % time.time()
            await self.backend.publish(channel, self._tag + stamp + _SEPARATOR + payload)
        except BrokerUnavailable:
            logger.warning("broker unavailable; %s delivered in this process only", channel)
        except Exception:
            logger.exception("broker publish to %s failed", channel)

    def _fan_out(self, channel: str, item: T) -> None:
        # The one place where a message reaches this process's subscribers.
        for sink in tuple(self._subscribers.get(channel, ())):
            sink.offer(item)

    async def _read(self) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                event = await self.backend.next_event()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("broker read failed; retrying in %.2fs", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            delay = _RETRY_FIRST
            tag, separator, payload = event.payload.partition(_SEPARATOR)
            if not separator:
                logger.warning("dropped an untagged broker event on %s", event.channel)
                continue
            if tag + separator == self._tag:
                continue  # ours: already delivered locally by `publish`
            stamp, separator, payload = payload.partition(_SEPARATOR)
            try:
                published_at = float(stamp)
            except ValueError:
                separator = b""
            if not separator:
                logger.warning("dropped a broker event without a timestamp on %s", event.channel)
                continue
            if self._on_lag is not None:
                self._on_lag(max(0.0, time.time() - published_at))
            try:
                item = self._decode(event.channel, payload)
            except Exception:
                logger.warning("dropped an undecodable broker event on %s", event.channel)
                continue
            self._fan_out(event.channel, item)
