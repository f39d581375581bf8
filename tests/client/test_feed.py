"""The room feed's state machine, driven by recorded frames: order, duplicates,
gaps, a full buffer and an unrecovered join, each delivered once and in order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from townsquare.client import RoomLeft
from townsquare.client.feed import HISTORY_PAGE, RoomFeed
from townsquare.rooms.protocol import JoinedFrame, LeftFrame, LeftReason, MessageFrame
from townsquare.users.schemas import UserPublic

ROOM = "general"
ANN = UserPublic(id=1, name="Ann")


def message(seq: int) -> MessageFrame:
    return MessageFrame(
        room=ROOM, id=seq, seq=seq, author=ANN, body=f"m{seq}", sent_at=datetime.now(UTC)
    )


def joined(seq: int, *, recovered: bool = True) -> JoinedFrame:
    return JoinedFrame(room=ROOM, seq=seq, online=[ANN], online_count=1, recovered=recovered)


class History:
    """The room's stored messages, served the way GET /rooms/{name}/messages does."""

    def __init__(self, last: int) -> None:
        self.stored = [message(seq) for seq in range(1, last + 1)]
        self.calls: list[tuple[int, int]] = []

    async def page(self, room: str, after: int, limit: int) -> list[MessageFrame]:
        assert room == ROOM
        assert 1 <= limit <= HISTORY_PAGE
        self.calls.append((after, limit))
        return [m for m in self.stored if m.seq > after][:limit]


def feed(history: History, *, since: int | None = None, capacity: int = 100) -> RoomFeed:
    return RoomFeed(ROOM, since=since, capacity=capacity, fetch=history.page, rejoin=rejoins.append)


rejoins: list[RoomFeed] = []


@pytest.fixture(autouse=True)
def _no_rejoins() -> None:
    rejoins.clear()


async def take(room: RoomFeed, count: int) -> list[int]:
    return [(await room.next()).seq for _ in range(count)]


async def test_live_messages_are_delivered_in_order_and_duplicates_dropped() -> None:
    history = History(0)
    room = feed(history)
    room.on_joined(joined(0), connection=object())
    for seq in (1, 2, 2, 1, 3):
        room.offer(message(seq))
    assert await take(room, 3) == [1, 2, 3]
    assert history.calls == []


async def test_first_join_without_since_starts_at_the_rooms_latest_seq() -> None:
    room = feed(History(7))
    room.on_joined(joined(7), connection=object())
    assert room.offer(message(7)) is False
    assert room.offer(message(8)) is True
    assert await take(room, 1) == [8]


async def test_a_gap_in_the_live_stream_is_filled_from_history() -> None:
    history = History(6)
    room = feed(history, since=0)
    room.on_joined(joined(0), connection=object())
    room.offer(message(1))
    room.offer(message(4))  # 2 and 3 went missing
    assert room.behind
    assert await take(room, 1) == [1]
    assert await take(room, 5) == [2, 3, 4, 5, 6]
    assert history.calls == [(1, 100)]


async def test_a_full_buffer_drops_and_pages_the_rest_when_drained() -> None:
    history = History(10)
    room = feed(history, since=0, capacity=3)
    room.on_joined(joined(0), connection=object())
    for seq in range(1, 11):
        room.offer(message(seq))
    assert room.buffered == 3
    assert await take(room, 10) == list(range(1, 11))
    assert all(limit <= 3 for _, limit in history.calls)


async def test_unrecovered_join_pages_the_gap_then_asks_to_join_again() -> None:
    history = History(450)
    room = feed(history, since=10, capacity=1000)
    room.on_joined(joined(450, recovered=False), connection=object())
    # Live messages after the join arrive while the gap is still being paged.
    history.stored.append(message(451))
    room.offer(message(451))
    assert await take(room, 441) == list(range(11, 452))
    assert [after for after, _ in history.calls] == [10, 210, 410]
    assert rejoins == [room]
    assert room.position == 451


async def test_left_ends_the_feed_after_what_was_delivered_before_it() -> None:
    room = feed(History(2), since=0)
    room.on_joined(joined(0), connection=object())
    room.offer(message(1))
    room.on_left(LeftFrame(room=ROOM, reason=LeftReason.REMOVED))
    assert room.offer(message(2)) is False
    assert await take(room, 1) == [1]
    with pytest.raises(RoomLeft) as left:
        await room.next()
    assert left.value.reason is LeftReason.REMOVED


async def test_history_with_a_hole_is_taken_as_it_is() -> None:
    # Retention may have purged old messages: history is the truth of what exists.
    history = History(10)
    history.stored = [m for m in history.stored if m.seq > 6]
    room = feed(history, since=2)
    room.on_joined(joined(10, recovered=False), connection=object())
    assert await take(room, 4) == [7, 8, 9, 10]
