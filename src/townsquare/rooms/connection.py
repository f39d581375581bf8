"""One authenticated WebSocket: a reader and a writer in one task group.

The reader parses frames and acts. The writer is the only task that sends: it drains
the connection's bounded outbox, where feeds put the frames of the rooms it joined
(each frame built once per process and shared) and the reader puts its answers. Per
joined room the writer skips what it already sent, so a replay and live traffic
overlap without duplicates. Heartbeat, token expiry and the process-wide sweeps are
done by the manager's housekeeping, not by a task per connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.types import Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from townsquare.auth.exceptions import EmailNotVerified
from townsquare.platform.errors import AppError
from townsquare.platform.tracing import traced_frame
from townsquare.rooms.account import Account
from townsquare.rooms.errors import (
    ClientGone,
    CloseConnection,
    check_frame,
    error_text,
    frame_error,
)
from townsquare.rooms.feed import Delivery, Subscription
from townsquare.rooms.outbox import Outbox
from townsquare.rooms.protocol import (
    CLIENT_FRAME,
    AuthFrame,
    ClientFrame,
    CloseCode,
    ErrorCode,
    JoinFrame,
    LeaveFrame,
    LeftReason,
    PingFrame,
    PongFrame,
    RefreshFrame,
    SendFrame,
    TypingFrame,
)
from townsquare.rooms.throttle import UserThrottle

if TYPE_CHECKING:
    from townsquare.rooms.manager import ConnectionManager

logger = logging.getLogger(__name__)

PONG = PongFrame().model_dump_json()
# Sends of one connection waiting for their batch at once; the reader waits beyond it.
MAX_SENDS_IN_FLIGHT = 16
# A connection's `typing` frames reach a room at most this often.
TYPING_INTERVAL = 1.0
# Messages read from history per query during a replay.
REPLAY_PAGE = 2000


@dataclass(slots=True)
class Replay:
    """Writer instruction: send `joined`, then the messages after `since` up to `upto`
    (when `recovered`), from the feed's ring if it still holds them, else from history."""

    subscription: Subscription
    joined: str
    since: int
    upto: int
    recovered: bool


class _Close:
    """Writer instruction: stop now (the reason is in `Connection.closing`)."""


_CLOSE = _Close()
Outgoing = tuple[Subscription, Delivery] | str | Replay | _Close


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        send: Send,
        manager: ConnectionManager,
        *,
        connection_id: str | None = None,
        account: Account,
        token_expires_at: float,
        session_id: str | None = None,
        throttle: UserThrottle,
    ) -> None:
        self.websocket = websocket
        self._send = send
        self.manager = manager
        self.settings = manager.settings
        self.account = account
        self.id = connection_id or uuid.uuid4().hex
        self.session_id = session_id
        self.token_expires_at = token_expires_at
        self.expiry_warned_at: float | None = None
        self.rooms: dict[str, Subscription] = {}
        self.last_seen = time.monotonic()
        self.throttle = throttle
        self.strikes = 0  # frames sent after a rate_limited error, since the last allowed
        self.outbox: Outbox[Outgoing] = Outbox(
            self.settings.ws_send_queue_size, on_overflow=self._overflowed
        )
        self.closing: CloseConnection | None = None
        self.closed = asyncio.Event()
        self.sent = 0  # frames sent, collected into the metrics by the manager
        self.received = 0
        self._writer: asyncio.Task[None] | None = None
        self._sending = False
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._typed_at: dict[str, float] = {}

    # -- called by feeds, the manager and the reader -----------------------------------

    def deliver(self, subscription: Subscription, delivery: Delivery) -> None:
        self.outbox.push((subscription, delivery))

    def send_text(self, text: str) -> None:
        self.outbox.push(text)

    def close_soon(self, code: int, reason: str, error: ErrorCode | None = None) -> None:
        """End the connection with `code` as soon as the writer can, even if it is
        stuck sending to a client that does not read."""
        if self.closing is not None:
            return
        self.closing = CloseConnection(code, reason, error)
        self.outbox.push_urgent(_CLOSE)
        if self._sending and self._writer is not None:
            self._writer.cancel()

    def _overflowed(self) -> None:
        self.close_soon(CloseCode.TRY_AGAIN_LATER, "too slow to read")

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> CloseConnection | None:
        """Serve until one loop ends; return why the server closes, or None if the
        client went away. Rooms are left before this returns."""
        outcome: CloseConnection | None = None
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read_loop(), name=f"ws-read-{self.id}")
                self._writer = group.create_task(self._write_loop(), name=f"ws-write-{self.id}")
        except* CloseConnection as closing:
            first = closing.exceptions[0]
            assert isinstance(first, CloseConnection)
            outcome = first
        except* (ClientGone, WebSocketDisconnect):
            outcome = None
        except* Exception as failed:
            logger.error("websocket %s failed", self.id, exc_info=failed.exceptions[0])
            outcome = CloseConnection(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            for future in self._in_flight:
                future.cancel()
            await self.manager.leave_all(self)
        return outcome

    # -- reader ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        receive = self.websocket.receive
        max_bytes = self.settings.ws_max_frame_bytes
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                raise ClientGone()
            self.last_seen = time.monotonic()
            self.received += 1
            text = check_frame(message, max_bytes)
            if not self.throttle.take():
                self._limited()
                continue
            self.strikes = 0
            try:
                frame: ClientFrame = CLIENT_FRAME.validate_json(text)
            except ValidationError as exc:
                code, detail = frame_error(exc)
                self.send_text(error_text(code, detail))
                continue
            try:
                await self._handle(frame)
            except (CloseConnection, asyncio.CancelledError):
                raise
            except AppError as exc:
                self.send_text(error_text(ErrorCode.INVALID_FRAME, exc.message, frame.ref))
            except Exception:
                logger.exception("failed to handle a %s frame", frame.type)
                self.send_text(error_text(ErrorCode.INTERNAL, "Internal error", frame.ref))

    def _limited(self) -> None:
        """A frame over the user's budget: refused with one error; a client that goes
        on regardless for another burst's worth is closed."""
        self.strikes += 1
        if self.strikes == 1:
            self.send_text(
                error_text(ErrorCode.RATE_LIMITED, "Too many frames for this user; slow down")
            )
        elif self.strikes > self.throttle.capacity:
            raise CloseConnection(
                CloseCode.POLICY_VIOLATION, "message rate exceeded", ErrorCode.RATE_LIMITED
            )

    @traced_frame  # a span per frame while tracing is on (platform/tracing.py)
    async def _handle(self, frame: ClientFrame) -> None:
        match frame:
            case PingFrame():
                self.send_text(PONG)
            case SendFrame():
                await self._on_send(frame)
            case JoinFrame():
                await self.manager.join(self, frame.room, since=frame.since, ref=frame.ref)
            case LeaveFrame():
                if frame.room not in self.rooms:
                    self._not_joined(frame.room, frame.ref)
                else:
                    await self.manager.leave(self, frame.room)
            case TypingFrame():
                await self._on_typing(frame)
            case AuthFrame() | RefreshFrame():
                await self.manager.refresh_token(self, frame.token)

    def _not_joined(self, room: str, ref: str | None) -> None:
        self.send_text(error_text(ErrorCode.NOT_JOINED, f"Join room {room!r} first", ref))

    async def _on_send(self, frame: SendFrame) -> None:
        subscription = self.rooms.get(frame.room)
        if subscription is None:
            self._not_joined(frame.room, frame.ref)
            return
        if len(self._in_flight) >= MAX_SENDS_IN_FLIGHT:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        stored = self.manager.submit_message(
            subscription.feed.room,
            author=self.account.public,
            body=frame.body,
            client_id=frame.client_id,
        )
        # The sender sees its message come back through the room like everyone else;
        # only a refusal needs an answer of its own.
        self._in_flight.add(stored)
        stored.add_done_callback(self._on_stored(frame.room, frame.ref))

    def _on_stored(self, room: str, ref: str | None) -> Callable[[asyncio.Future[Any]], None]:
        def done(stored: asyncio.Future[Any]) -> None:
            self._in_flight.discard(stored)
            if stored.cancelled():
                return
            exc = stored.exception()
            if exc is None:
                return
            if isinstance(exc, EmailNotVerified):
                self.send_text(error_text(ErrorCode.EMAIL_NOT_VERIFIED, exc.message, ref))
            elif isinstance(exc, AppError):
                self.send_text(error_text(ErrorCode.ROOM_NOT_FOUND, exc.message, ref))
            else:
                logger.error("storing a message into %s failed", room, exc_info=exc)
                self.send_text(error_text(ErrorCode.INTERNAL, "Internal error", ref))

        return done

    async def _on_typing(self, frame: TypingFrame) -> None:
        if frame.room not in self.rooms:
            self._not_joined(frame.room, frame.ref)
            return
        now = time.monotonic()
        if now - self._typed_at.get(frame.room, -TYPING_INTERVAL) < TYPING_INTERVAL:
            return  # once a second is all a room needs to show "typing"
        self._typed_at[frame.room] = now
        await self.manager.publish_typing(frame.room, self.account.public)

    # -- writer ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        outbox = self.outbox
        items = outbox.items
        send = self._send
        try:
            while True:
                await outbox.wait()
                if outbox.overflowed:
                    raise CloseConnection(CloseCode.TRY_AGAIN_LATER, "too slow to read")
                self._sending = True
                while items:
                    item = items.popleft()
                    if type(item) is tuple:
                        subscription, delivery = item
                        if not subscription.active:
                            continue
                        seq = delivery.seq
                        if seq is not None:
                            if seq <= subscription.sent_seq:
                                continue
                            subscription.sent_seq = seq
                        await send(delivery.message)
                        self.sent += 1
                    elif isinstance(item, str):
                        await self.send_frame(item)
                    elif isinstance(item, Replay):
                        await self._replay(item)
                    else:
                        assert self.closing is not None
                        raise self.closing
                self._sending = False
        except asyncio.CancelledError:
            if self.closing is not None:
                raise self.closing from None
            raise
        except OSError:
            # The client went away while we were writing to it (uvicorn's
            # ClientDisconnected is an OSError): not a server failure.
            raise ClientGone() from None

    async def send_frame(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})
        self.sent += 1

    async def _replay(self, replay: Replay) -> None:
        subscription = replay.subscription
        if not subscription.active:
            return  # left (or removed) before the writer got here
        await self.send_frame(replay.joined)
        if not replay.recovered or replay.upto <= replay.since:
            return
        feed = subscription.feed
        buffered = feed.buffered(replay.since, replay.upto)
        if buffered is not None:
            for delivery in buffered:
                await self._send(delivery.message)
            self.sent += len(buffered)
            return
        after = replay.since
        while after < replay.upto:
            page = await self.manager.history(feed.room, after, replay.upto, REPLAY_PAGE)
            if not page:
                break
            for seq, text in page:
                await self._send({"type": "websocket.send", "text": text})
                after = seq
            self.sent += len(page)

    # -- manager's view -----------------------------------------------------------------

    def remove_from(self, room: str, reason: LeftReason, left_text: str) -> Subscription | None:
        """Take the connection out of `room` on the server's decision: `left` follows
        at once, and nothing more of the room (queued frames of it are skipped)."""
        subscription = self.rooms.pop(room, None)
        if subscription is None:
            return None
        subscription.feed.unsubscribe(subscription)
        self.send_text(left_text)
        return subscription

    def watch(self, now: float, wall: float) -> None:
        """The manager's periodic check: heartbeat and token expiry."""
        settings = self.settings
        if now - self.last_seen > settings.ws_heartbeat_timeout_seconds:
            self.close_soon(CloseCode.POLICY_VIOLATION, "heartbeat timeout")
        elif wall >= self.token_expires_at:
            if self.expiry_warned_at is None:
                self.expiry_warned_at = now
                self.send_text(
                    error_text(
                        ErrorCode.TOKEN_EXPIRED,
                        "The access token expired; send `refresh` with a new one "
                        f"within {settings.ws_auth_timeout_seconds:g}s",
                    )
                )
            elif now - self.expiry_warned_at > settings.ws_auth_timeout_seconds:
                self.close_soon(
                    CloseCode.POLICY_VIOLATION, "access token expired", ErrorCode.TOKEN_EXPIRED
                )
