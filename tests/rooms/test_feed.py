"""A room's feed, driven directly: order, gaps filled once per process, the ring."""

from __future__ import annotations

import asyncio
from typing import cast

from townsquare.platform.broker.envelope import Envelope
from townsquare.rooms.connection import Connection
from townsquare.rooms.feed import Delivery, RoomFeed, Subscription
from townsquare.rooms.store import RoomRef

ROOM = RoomRef(1, "general")


class Member:
    """Stands in for a connection: records what the feed hands it."""

    def __init__(self) -> None:
        self.got: list[tuple[int | None, str]] = []
        self.changed = asyncio.Event()

    def deliver(self, subscription: Subscription, delivery: Delivery) -> None:
        self.got.append((delivery.seq, delivery.text))
        self.changed.set()

    async def until_seq(self, seq: int, within: float = 5) -> list[int | None]:
        async with asyncio.timeout(within):
            while not self.got or self.got[-1][0] != seq:
                self.changed.clear()
                await self.changed.wait()
        return [s for s, _ in self.got]


class History:
    """The database's answer to gap queries, counted."""

    def __init__(self, stored: int) -> None:
        self.stored = stored
        self.queries: list[tuple[int, int]] = []

    async def __call__(
        self, room: RoomRef, after: int, upto: int, limit: int
    ) -> list[tuple[int, str]]:
        self.queries.append((after, upto))
        last = min(upto, self.stored, after + limit)
        return [(seq, f"m{seq}") for seq in range(after + 1, last + 1)]


def _feed(history: History, *, buffer: int = 100) -> RoomFeed:
    return RoomFeed(
        ROOM, history=history, buffer_size=buffer, gap_hold=0.01, on_idle=lambda feed: None
    )


def _member(feed: RoomFeed, sent: int = 0) -> Member:
    member = Member()
    feed.subscribe(cast(Connection, member), sent)
    return member


def _message(seq: int) -> Envelope:
    return Envelope(origin="x", body=f"m{seq}", seq=seq)


async def test_out_of_order_messages_go_out_in_seq_order_without_a_query() -> None:
    history = History(stored=0)
    feed = _feed(history)
    feed.start(0)
    member = _member(feed)
    for seq in (2, 3, 1, 4):
        feed.on_envelope(_message(seq))
    assert await member.until_seq(4) == [1, 2, 3, 4]
    assert history.queries == []


async def test_copies_and_messages_already_handed_on_are_dropped() -> None:
    feed = _feed(History(stored=0))
    feed.start(0)
    member = _member(feed)
    for seq in (1, 1, 2, 1, 2, 3):
        feed.on_envelope(_message(seq))
    assert await member.until_seq(3) == [1, 2, 3]


async def test_a_real_gap_is_filled_with_one_query_for_every_member() -> None:
    history = History(stored=5)
    feed = _feed(history)
    feed.start(0)
    members = [_member(feed) for _ in range(100)]
    feed.on_envelope(_message(5))  # 1..4 never come through the broker
    for member in members:
        assert await member.until_seq(5) == [1, 2, 3, 4, 5]
    assert history.queries == [(0, 4)]
    assert feed.gap_queries == 1


async def test_messages_before_start_wait_and_those_up_to_the_start_are_dropped() -> None:
    feed = _feed(History(stored=0))
    member = _member(feed)
    for seq in (3, 4, 5):  # arrive while the feed reads where the room is
        feed.on_envelope(_message(seq))
    assert member.got == []
    feed.start(3)  # the room was at 3: 3 is old, 4 and 5 go out
    assert await member.until_seq(5) == [4, 5]


async def test_events_without_seq_go_out_at_once_even_while_a_gap_is_open() -> None:
    history = History(stored=3)
    feed = _feed(history)
    feed.start(0)
    member = _member(feed)
    feed.on_envelope(_message(3))
    feed.on_envelope(Envelope(origin="x", body="typing", seq=None))
    assert member.got == [(None, "typing")]
    assert await member.until_seq(3) == [None, 1, 2, 3]


async def test_ring_serves_recent_ranges_and_says_when_it_cannot() -> None:
    feed = _feed(History(stored=0), buffer=5)
    feed.start(0)
    for seq in range(1, 9):
        feed.on_envelope(_message(seq))
    # The ring holds 4..8.
    recent = feed.buffered(5, 8)
    assert recent is not None
    assert [d.seq for d in recent] == [6, 7, 8]
    assert feed.buffered(2, 8) is None  # 3 is gone from memory
    assert feed.buffered(8, 8) == []
    assert feed.buffered(5, 9) is None  # beyond what went out


async def test_closed_feed_hands_on_nothing_and_stops_its_gap_filler() -> None:
    history = History(stored=10)
    feed = _feed(history)
    feed.start(0)
    member = _member(feed)
    feed.on_envelope(_message(10))  # opens a gap: the filler waits out the hold
    filler = feed._filling
    assert filler is not None
    await feed.aclose()
    assert filler.cancelled()
    feed.on_envelope(_message(1))
    assert member.got == []
    assert history.queries == []
    assert feed._filling is filler  # nothing new started


async def test_ring_holds_at_most_its_byte_budget_of_large_frames() -> None:
    feed = RoomFeed(
        ROOM,
        history=History(stored=0),
        buffer_size=100,
        buffer_bytes=1000,
        gap_hold=0.01,
        on_idle=lambda feed: None,
    )
    feed.start(0)
    for seq in range(1, 21):
        feed.on_envelope(Envelope(origin="x", body="x" * 300, seq=seq))
    assert [d.seq for d in feed.ring] == [18, 19, 20]  # 3 x 300 bytes fit in 1000
    assert feed.buffered(17, 20) is not None
    assert feed.buffered(16, 20) is None
