"""One room's feed in one process: between the broker and the room's connections.

A feed takes the room's envelopes (stored here, or by another process through the
broker), puts the stored ones in `seq` order, and hands each frame, encoded once, to
every local subscription. It keeps:

- `last_seq`: the last seq handed on (everything up to it went out, in order);
- out-of-order messages, held briefly: a message ahead of `last_seq + 1` waits
  `gap_hold` seconds for the ones before it (local delivery runs ahead of the
  broker), then the feed fills the gap from the database with one query per page,
  for the whole process, however many members the room has here;
- a ring of the room's latest frames (at most `buffer_size` of them and
  `buffer_bytes` of text), so a member rejoining with `since` inside it is served
  from memory.

Subscriptions are what connections hold: the feed pushes `(subscription, delivery)`
into the connection's outbox and the connection's writer skips what it already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from townsquare.platform.broker.envelope import Envelope
from townsquare.rooms.store import RoomRef

if TYPE_CHECKING:
    from townsquare.rooms.connection import Connection

logger = logging.getLogger(__name__)

# Most out-of-order messages held at once; past it the gap is filled at once.
MAX_HELD = 10_000
GAP_PAGE = 500


class Delivery:
    """A frame for a room's connections, built once and shared by all of them."""

    __slots__ = ("message", "seq")

    def __init__(self, seq: int | None, text: str) -> None:
        self.seq = seq
        # The ASGI message itself: every connection sends this same dict.
        self.message: dict[str, Any] = {"type": "websocket.send", "text": text}

    @property
    def text(self) -> str:
        return str(self.message["text"])


class Subscription:
    """A connection's place in a feed."""

    __slots__ = ("active", "connection", "feed", "sent_seq")

    def __init__(self, feed: RoomFeed, connection: Connection, sent_seq: int) -> None:
        self.feed = feed
        self.connection = connection
        # The highest seq this connection was sent (or had before it joined).
        self.sent_seq = sent_seq
        self.active = True


# (room, after seq, up to seq, limit) -> [(seq, frame text)], oldest first.
History = Callable[[RoomRef, int, int, int], Awaitable[list[tuple[int, str]]]]


class RoomFeed:
    def __init__(
        self,
        room: RoomRef,
        *,
        history: History,
        buffer_size: int,
        buffer_bytes: int = 256 * 1024,
        gap_hold: float,
        on_idle: Callable[[RoomFeed], None],
    ) -> None:
        self.room = room
        self._history = history
        self._gap_hold = gap_hold
        self._on_idle = on_idle
        self.subscriptions: set[Subscription] = set()
        self.ring: deque[Delivery] = deque()
        self._ring_size = buffer_size
        self._ring_budget = buffer_bytes
        self._ring_bytes = 0
        self.last_seq = 0
        self.started = False
        self.closed = False
        self._held: dict[int, Delivery] = {}
        self._filling: asyncio.Task[None] | None = None
        self.gap_queries = 0  # history queries this feed ran, for tests and benchmarks

    # -- lifecycle -----------------------------------------------------------------

    def start(self, last_seq: int) -> None:
        """Go live from `last_seq` (read after the broker subscription was in place,
        so nothing after it can be missed); held messages up to it are dropped."""
        self.last_seq = max(self.last_seq, last_seq)
        self.started = True
        self._release_held()

    def close(self) -> None:
        self.closed = True
        for subscription in self.subscriptions:
            subscription.active = False
        self.subscriptions.clear()
        self._held.clear()
        if self._filling is not None:
            self._filling.cancel()

    def subscribe(self, connection: Connection, sent_seq: int) -> Subscription:
        subscription = Subscription(self, connection, sent_seq)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.active = False
        self.subscriptions.discard(subscription)
        if not self.subscriptions:
            self._on_idle(self)

    # -- input -----------------------------------------------------------------------

    def on_envelope(self, envelope: Envelope) -> None:
        """The broker's handler for this room: local and remote envelopes alike."""
        if self.closed:
            return
        if envelope.seq is None:
            self._fan_out(Delivery(None, envelope.body))
        else:
            self.accept(Delivery(envelope.seq, envelope.body))

    def accept(self, delivery: Delivery) -> None:
        seq = delivery.seq
        assert seq is not None
        if seq <= self.last_seq or self.closed:
            return  # already handed on (a copy from the broker, or a filled gap)
        if not self.started or seq != self.last_seq + 1:
            self._held[seq] = delivery
            if self.started:
                self._schedule_fill()
            return
        self._emit(delivery)
        self._release_held()

    def _release_held(self) -> None:
        held = self._held
        if not held:
            return
        for seq in [seq for seq in held if seq <= self.last_seq]:
            del held[seq]
        while (following := held.pop(self.last_seq + 1, None)) is not None:
            self._emit(following)
        if held and self.started:
            self._schedule_fill()

    def _emit(self, delivery: Delivery) -> None:
        ring = self.ring
        ring.append(delivery)
        self._ring_bytes += len(delivery.message["text"])
        while ring and (len(ring) > self._ring_size or self._ring_bytes > self._ring_budget):
            self._ring_bytes -= len(ring.popleft().message["text"])
        assert delivery.seq is not None
        self.last_seq = delivery.seq
        self._fan_out(delivery)

    def _fan_out(self, delivery: Delivery) -> None:
        for subscription in self.subscriptions:
            subscription.connection.deliver(subscription, delivery)

    # -- gaps --------------------------------------------------------------------------

    def _schedule_fill(self) -> None:
        if self._filling is None or self._filling.done():
            self._filling = asyncio.create_task(self._fill(), name=f"feed-gap-{self.room.name}")

    async def _fill(self) -> None:
        if len(self._held) < MAX_HELD:
            # Most holes close by themselves within milliseconds: the missing message
            # was stored by another process and is still on its way through the broker.
            await asyncio.sleep(self._gap_hold)
        while self._held and not self.closed:
            upto = min(self._held) - 1
            if upto <= self.last_seq:
                self._release_held()
                continue
            try:
                self.gap_queries += 1
                page = await self._history(self.room, self.last_seq, upto, GAP_PAGE)
            except Exception:
                logger.warning(
                    "filling a gap in %s failed; retrying", self.room.name, exc_info=True
                )
                await asyncio.sleep(max(self._gap_hold, 0.5))
                continue
            for seq, text in page:
                self.accept(Delivery(seq, text))
            if not page:
                # Not in the database: numbers taken by a transaction that rolled back
                # cannot exist (seq is assigned in the inserting transaction), so an
                # empty page means the rows are not visible yet. Wait, then retry.
                await asyncio.sleep(self._gap_hold)

    # -- recovery --------------------------------------------------------------------

    def buffered(self, after: int, upto: int) -> list[Delivery] | None:
        """The frames after `after` up to `upto` if the ring still holds them all."""
        ring = self.ring
        if upto <= after:
            return []
        if not ring:
            return None
        first = ring[0].seq
        assert first is not None
        if first > after + 1 or self.last_seq < upto:
            return None
        start = after + 1 - first
        return list(itertools.islice(ring, start, start + (upto - after)))

    async def aclose(self) -> None:
        self.close()
        if self._filling is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._filling
