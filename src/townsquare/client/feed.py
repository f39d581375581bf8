"""One joined room as the caller sees it: its messages in `seq` order, each once.

Messages reach a feed from the socket (live, or replayed after a `join` with
`since`) and from history over REST. The feed keeps `position`, the last `seq` it
handed on; anything not the next one is dropped, and when it has dropped something
it is *behind*: the consumer then pages the history after `position` before it
waits on the socket again. A full buffer (a slow consumer) and `joined` with
`recovered: false` are handled the same way, so memory stays bounded and nothing is
lost or repeated.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from townsquare.client.errors import RoomLeft
from townsquare.rooms.protocol import (
    JoinedFrame,
    LeftFrame,
    MessageFrame,
    PresenceFrame,
    PresenceState,
)
from townsquare.users.schemas import UserPublic

# (room, after_seq, limit) -> the stored messages after `after_seq`, oldest first.
FetchPage = Callable[[str, int, int], Awaitable[list[MessageFrame]]]
HISTORY_PAGE = 200  # the most GET /rooms/{name}/messages returns at once


class RoomFeed:
    def __init__(
        self,
        name: str,
        *,
        since: int | None,
        capacity: int,
        fetch: FetchPage,
        rejoin: Callable[[RoomFeed], None],
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.name = name
        self.position = since  # the last seq handed on; None: live from the first join
        self.known = since or 0  # the highest seq known to exist
        self.behind = False
        self.capacity = capacity
        self.online: dict[int, UserPublic] = {}
        self.joined: JoinedFrame | None = None
        # The connection the last `join` went out on, and the one `joined` came on.
        self.join_sent_on: object | None = None
        self.live_on: object | None = None
        self.left: LeftFrame | None = None
        self.failure: BaseException | None = None
        self._fetch = fetch
        self._rejoin = rejoin
        self._rejoin_when_caught_up = False
        self._buffer: deque[MessageFrame] = deque()
        self._wake = asyncio.Event()

    # -- from the socket -------------------------------------------------------------

    def on_joined(self, frame: JoinedFrame, connection: object) -> None:
        self.joined = frame
        self.live_on = connection
        self.known = max(self.known, frame.seq)
        if self.position is None:
            self.position = frame.seq
        elif not frame.recovered:
            # Nothing after `since` is replayed: page it, then join again with the
            # newer position (the protocol's answer to a gap over WS_REPLAY_MAX).
            self.behind = True
            self._rejoin_when_caught_up = True
        self.online = {user.id: user for user in frame.online}
        self._wake.set()

    def on_presence(self, frame: PresenceFrame) -> None:
        if frame.state is PresenceState.ONLINE:
            self.online[frame.user.id] = frame.user
        else:
            self.online.pop(frame.user.id, None)

    def on_left(self, frame: LeftFrame) -> None:
        self.left = frame
        self.live_on = None
        self._wake.set()

    def on_disconnected(self) -> None:
        self.live_on = None

    def offer(self, message: MessageFrame, *, from_history: bool = False) -> bool:
        """Take `message` if it is the next one (or, from history, any later one:
        history has nothing in between) and there is room; else drop it."""
        if self.left is not None or self.position is None:
            return False
        self.known = max(self.known, message.seq)
        if message.seq <= self.position:
            return False  # had it already
        in_order = from_history or message.seq == self.position + 1
        if not in_order or len(self._buffer) >= self.capacity:
            self.behind = True
            self._wake.set()
            return False
        self._buffer.append(message)
        self.position = message.seq
        if self.position >= self.known and not self._rejoin_when_caught_up:
            self.behind = False
        self._wake.set()
        return True

    def fail(self, error: BaseException) -> None:
        """End the feed: the consumer gets what is buffered, then `error`."""
        if self.failure is None:
            self.failure = error
        self._wake.set()

    # -- to the consumer -------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def next(self) -> MessageFrame:
        """The next message; pages history while behind. One consumer at a time."""
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self.left is not None:
                raise RoomLeft(self.name, self.left.reason)
            if self.failure is not None:
                raise self.failure
            if self.behind and self.position is not None:
                await self._catch_up(self.position)
                continue
            self._wake.clear()
            await self._wake.wait()

    async def _catch_up(self, after: int) -> None:
        limit = min(HISTORY_PAGE, self.capacity)
        page = await self._fetch(self.name, after, limit)
        # Live messages may have moved `position` on meanwhile; offer() drops those.
        for message in page:
            self.offer(message, from_history=True)
        if len(page) < limit:
            # The end of what is stored: from here the socket has everything.
            self.behind = False
            if self._rejoin_when_caught_up:
                self._rejoin_when_caught_up = False
                self._rejoin(self)
