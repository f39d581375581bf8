"""Sends until confirmed: each `send` frame is written, and written again with the
same `client_id`, until its message is seen in the room.

The server has no reply to `send` but the message itself, delivered to the room
(the sender included) once it is stored. A send is confirmed when that message
arrives, live, replayed after a rejoin, or in history. It is written again after
each reconnect (once the room is rejoined), after the server said `rate_limited`,
and when no confirmation came within `ack_timeout` and the room's latest history
does not show it either. The server stores a `client_id` once per sender and room,
so a repeated write never makes a second message.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import httpx
from websockets.exceptions import ConnectionClosed

from townsquare.client.errors import ApiError, ClientError, RoomLeft, SendRejected, SendTimeout
from townsquare.rooms.protocol import ErrorCode, ErrorFrame, MessageFrame, SendFrame

if TYPE_CHECKING:
    from townsquare.client.client import Client
    from townsquare.client.feed import RoomFeed

# How far back in a room's history a send that got no answer is looked for.
CONFIRM_LOOKBACK = 200


@dataclass(eq=False)
class PendingSend:
    frame: SendFrame
    done: asyncio.Future[MessageFrame] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    writes: int = 0


class Outbox:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.pending: dict[tuple[str, str], PendingSend] = {}
        self._by_ref: dict[str, PendingSend] = {}
        # Bumped when every unconfirmed send must be written again (rate_limited).
        self.resend_epoch = 0

    async def send(self, feed: RoomFeed, body: str, client_id: str, within: float) -> MessageFrame:
        key = (feed.name, client_id)
        pending = self.pending.get(key)
        if pending is not None:  # the same send already under way: share its outcome
            return await self._wait(pending, within)
        ref = self.client.next_ref("s")
        frame = SendFrame(type="send", room=feed.name, body=body, client_id=client_id, ref=ref)
        pending = PendingSend(frame)
        self.pending[key] = pending
        self._by_ref[ref] = pending
        try:
            async with asyncio.timeout(within):
                return await self._deliver(feed, pending)
        except TimeoutError:
            raise SendTimeout(feed.name, client_id) from None
        finally:
            self.pending.pop(key, None)
            self._by_ref.pop(ref, None)
            if not pending.done.done():
                pending.done.cancel()

    async def _wait(self, pending: PendingSend, within: float) -> MessageFrame:
        try:
            async with asyncio.timeout(within):
                return await asyncio.shield(pending.done)
        except TimeoutError:
            raise SendTimeout(pending.frame.room, str(pending.frame.client_id)) from None

    async def _deliver(self, feed: RoomFeed, pending: PendingSend) -> MessageFrame:
        client = self.client
        while True:
            # Wait for a connection on which the room is joined.
            await client.changes.until(
                lambda: pending.done.done() or _ended(feed, client) or _live(feed, client)
            )
            if pending.done.done():
                return pending.done.result()
            _raise_if_ended(feed, client)
            connection = client.connection
            assert connection is not None
            epoch = self.resend_epoch
            try:
                await client.write(connection, pending.frame)
                pending.writes += 1
            except ConnectionClosed:
                continue
            answered = await client.changes.until(
                partial(self._answered, feed, pending, connection, epoch), client.ack_timeout
            )
            if pending.done.done():
                return pending.done.result()
            _raise_if_ended(feed, client)
            if not answered:
                stored = await self._look_up(pending)
                if stored is not None:
                    return stored

    def _answered(
        self, feed: RoomFeed, pending: PendingSend, connection: object, epoch: int
    ) -> bool:
        """Whether to stop waiting for the confirmation of a write: it came, or the
        write may be lost (the connection went, `rate_limited`), or it is over."""
        return (
            pending.done.done()
            or _ended(feed, self.client)
            or feed.live_on is not connection
            or self.resend_epoch != epoch
        )

    async def _look_up(self, pending: PendingSend) -> MessageFrame | None:
        """The send's message if the room's latest history has it (its confirmation
        can miss the socket: stored, then the connection broke, and the replay after
        the rejoin skipped it because the server did not recover the gap)."""
        user = self.client.user
        with contextlib.suppress(ApiError, httpx.TransportError):
            page = await self.client.api.history(pending.frame.room, limit=CONFIRM_LOOKBACK)
            for message in page:
                author_id = message.author.id if message.author is not None else None
                if message.client_id == pending.frame.client_id and (
                    user is None or author_id == user.id
                ):
                    return MessageFrame(**message.model_dump())
        return None

    # -- from the reader -------------------------------------------------------------

    def confirm(self, message: MessageFrame) -> None:
        """A message seen in a room: it confirms the send with its `client_id`."""
        if message.client_id is None:
            return
        user = self.client.user
        if user is not None and (message.author is None or message.author.id != user.id):
            return
        pending = self.pending.get((message.room, message.client_id))
        if pending is not None and not pending.done.done():
            pending.done.set_result(message)
            self.client.changes.notify()

    def refused(self, error: ErrorFrame) -> bool:
        """An `error` naming a send: refuse it for good, unless the error is one a
        later write can get past. True if `error.ref` was a send."""
        pending = self._by_ref.get(error.ref or "")
        if pending is None:
            return False
        final = error.code in (ErrorCode.INVALID_FRAME, ErrorCode.INVALID_JSON)
        if final and not pending.done.done():
            pending.done.set_exception(SendRejected(error))
            self.client.changes.notify()
        # not_joined (a race with a rejoin) and internal errors: the next write retries.
        return True

    def resend_all(self) -> None:
        self.resend_epoch += 1
        self.client.changes.notify()

    def fail_room(self, room: str, error: ClientError) -> None:
        for (name, _), pending in list(self.pending.items()):
            if name == room and not pending.done.done():
                pending.done.set_exception(error)
        self.client.changes.notify()

    def fail_all(self, error: BaseException) -> None:
        for pending in list(self.pending.values()):
            if not pending.done.done():
                pending.done.set_exception(error)


def _live(feed: RoomFeed, client: Client) -> bool:
    return client.connection is not None and feed.live_on is client.connection


def _ended(feed: RoomFeed, client: Client) -> bool:
    return client.failure is not None or feed.left is not None or feed.failure is not None


def _raise_if_ended(feed: RoomFeed, client: Client) -> None:
    if feed.left is not None:
        raise RoomLeft(feed.name, feed.left.reason)
    if feed.failure is not None:
        raise feed.failure
    client.check()
