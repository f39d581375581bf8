"""One authenticated WebSocket: a reader, a writer and a watchdog in one task group.

The reader parses frames and acts; the writer is the only task that sends, draining
a bounded mailbox; the watchdog closes the connection on a slow consumer (1013), a
silent client (heartbeat) or an access token that expired without `refresh`.

Room messages reach the writer in any order (from the hub, and after a join from
history); per joined room it keeps the last `seq` sent, drops what is not newer and
fills any hole from the database, so the client sees each room gap-free, in order,
exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from townsquare.auth import accounts
from townsquare.auth import service as auth_service
from townsquare.auth.exceptions import EmailNotVerified
from townsquare.auth.tokens import TokenCodec
from townsquare.platform.broker.hub import Mailbox, MailboxOverflow
from townsquare.platform.errors import AppError
from townsquare.rooms import service as rooms_service
from townsquare.rooms.exceptions import RoomNotFound
from townsquare.rooms.frames import (
    ClientGone,
    CloseConnection,
    RateLimiter,
    check_frame,
    error_text,
    frame_error,
)
from townsquare.rooms.manager import ConnectionManager, RoomEvent, message_frame, room_channel
from townsquare.rooms.models import Room
from townsquare.rooms.protocol import (
    CLIENT_FRAME,
    AuthFrame,
    ClientFrame,
    CloseCode,
    ErrorCode,
    JoinedFrame,
    JoinFrame,
    LeaveFrame,
    PingFrame,
    PongFrame,
    RefreshFrame,
    SendFrame,
    TypingFrame,
)
from townsquare.users.models import User
from townsquare.users.schemas import UserPublic

logger = logging.getLogger(__name__)

HISTORY_PAGE = 200
PONG = PongFrame().model_dump_json()


@dataclass(frozen=True, slots=True)
class Replay:
    """Writer instruction: send `joined`, replay history after `since`, go live."""

    state: RoomState
    since: int | None
    current: int


@dataclass(eq=False)
class RoomState:
    room: Room
    last_seq: int = 0
    syncing: bool = True
    pending: list[RoomEvent] = field(default_factory=list)


Outgoing = str | RoomEvent | Replay


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        manager: ConnectionManager,
        *,
        user: User,
        token_expires_at: float,
    ) -> None:
        self.websocket = websocket
        self.manager = manager
        self.settings = manager.settings
        self.user = user
        self.public = UserPublic(id=user.id, name=user.name)
        self.id = uuid.uuid4().hex
        self.token_expires_at = token_expires_at
        # The login this connection belongs to, once access tokens name it.
        self.session_id: str | None = None
        self.expiry_warned_at: float | None = None
        self.rooms: dict[str, RoomState] = {}
        self.last_seen = time.monotonic()
        self.limiter = RateLimiter(self.settings.ws_messages_per_second)
        self.mailbox: Mailbox[Outgoing] = Mailbox(self.settings.ws_send_queue_size)
        self.closed = asyncio.Event()
        self._wake = asyncio.Event()
        self._close_request: CloseConnection | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def send(self, text: str) -> None:
        self.mailbox.offer(text)

    def request_close(self, code: int, reason: str) -> None:
        self._close_request = CloseConnection(code, reason)
        self._wake.set()

    async def run(self) -> CloseConnection | None:
        """Serve until one loop ends; return why the server closes, or None if the
        client went away. Rooms are left before this returns."""
        outcome: CloseConnection | None = None
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read_loop())
                group.create_task(self._write_loop())
                group.create_task(self._watch())
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
            await self._leave_all()
        return outcome

    async def _leave_all(self) -> None:
        for name in list(self.rooms):
            await self._leave(name)

    # -- reader ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise ClientGone()
            self.last_seen = time.monotonic()
            text = check_frame(message, self.settings.ws_max_frame_bytes)
            allowed = self.limiter.take()
            if allowed is None:
                raise CloseConnection(
                    CloseCode.POLICY_VIOLATION, "message rate exceeded", ErrorCode.RATE_LIMITED
                )
            if not allowed:
                if not self.limiter.limited:
                    self.limiter.limited = True
                    self.send(error_text(ErrorCode.RATE_LIMITED, "Too many frames; slow down"))
                continue
            try:
                frame: ClientFrame = CLIENT_FRAME.validate_json(text)
            except ValidationError as exc:
                code, detail = frame_error(exc)
                self.send(error_text(code, detail))
                continue
            try:
                await self._handle(frame)
            except (CloseConnection, asyncio.CancelledError):
                raise
            except AppError as exc:
                self.send(error_text(ErrorCode.INVALID_FRAME, exc.message, frame.ref))
            except Exception:
                logger.exception("failed to handle a %s frame", frame.type)
                self.send(error_text(ErrorCode.INTERNAL, "Internal error", frame.ref))

    async def _handle(self, frame: ClientFrame) -> None:
        match frame:
            case PingFrame():
                self.send(PONG)
            case SendFrame():
                await self._on_send(frame)
            case JoinFrame():
                await self._on_join(frame)
            case LeaveFrame():
                if frame.room not in self.rooms:
                    self._not_joined(frame.room, frame.ref)
                else:
                    await self._leave(frame.room)
            case TypingFrame():
                if frame.room not in self.rooms:
                    self._not_joined(frame.room, frame.ref)
                else:
                    await self.manager.publish_typing(frame.room, self.public)
            case AuthFrame() | RefreshFrame():
                await self._on_refresh(frame.token)

    def _not_joined(self, room: str, ref: str | None) -> None:
        self.send(error_text(ErrorCode.NOT_JOINED, f"Join room {room!r} first", ref))

    async def _on_send(self, frame: SendFrame) -> None:
        state = self.rooms.get(frame.room)
        if state is None:
            self._not_joined(frame.room, frame.ref)
            return
        async with self.manager.database.sessions() as session:
            message, created = await rooms_service.post_message(
                session,
                room=state.room,
                author=self.public,
                body=frame.body,
                client_id=frame.client_id,
            )
        if created:
            await self.manager.publish_message(message)

    async def _on_join(self, frame: JoinFrame) -> None:
        if frame.room in self.rooms:
            await self._leave(frame.room)
        async with self.manager.database.sessions() as session:
            if not await accounts.may_participate(session, self.settings, self.user.id):
                self.send(
                    error_text(ErrorCode.EMAIL_NOT_VERIFIED, EmailNotVerified.detail, frame.ref)
                )
                return
            try:
                room = await rooms_service.get_visible_room(
                    session, name=frame.room, viewer=self.user
                )
            except RoomNotFound:
                self.send(error_text(ErrorCode.ROOM_NOT_FOUND, "Room not found", frame.ref))
                return
            state = RoomState(room=room)
            self.rooms[frame.room] = state
            # Subscribe first, then read where the room is: every message after that
            # point arrives live (held back until the replay is done), and anything
            # in between is caught by the writer's gap filling.
            await self.manager.hub.subscribe(room_channel(frame.room), self.mailbox)
            current = await rooms_service.last_seq(session, room_id=room.id)
        await self.manager.enter(frame.room, self.public, self.id)
        self.mailbox.offer(Replay(state, frame.since, current))

    async def _leave(self, room: str) -> None:
        if self.rooms.pop(room, None) is None:
            return
        await self.manager.hub.unsubscribe(room_channel(room), self.mailbox)
        await self.manager.exit(room, self.public, self.id)

    async def _on_refresh(self, token: str) -> None:
        codec: TokenCodec = self.websocket.app.state.tokens
        try:
            async with self.manager.database.sessions() as session:
                user = await auth_service.user_for_access_token(session, codec, token)
            claims = codec.decode_access(token)
        except AppError as exc:
            raise CloseConnection(
                CloseCode.POLICY_VIOLATION, exc.message, ErrorCode.INVALID_TOKEN
            ) from exc
        if user.id != self.user.id:
            raise CloseConnection(
                CloseCode.POLICY_VIOLATION, "token is for another user", ErrorCode.INVALID_TOKEN
            )
        self.user = user
        self.token_expires_at = claims.expires_at
        self.expiry_warned_at = None

    # -- writer ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            try:
                item = await self.mailbox.get()
            except MailboxOverflow:
                raise CloseConnection(CloseCode.TRY_AGAIN_LATER, "too slow to read") from None
            if isinstance(item, str):
                await self._send_text(item)
            elif isinstance(item, RoomEvent):
                await self._deliver(item)
            else:
                await self._replay(item)

    async def _send_text(self, text: str) -> None:
        # The one place where a frame is sent to a client (the counting point for
        # messages out).
        await self.websocket.send_text(text)

    async def _deliver(self, event: RoomEvent) -> None:
        state = self.rooms.get(event.room)
        if state is None:
            return
        if state.syncing:
            state.pending.append(event)
            if len(state.pending) > self.mailbox.maxsize:
                raise CloseConnection(CloseCode.TRY_AGAIN_LATER, "too slow to read")
            return
        if event.seq is None:
            await self._send_text(event.text)
            return
        if event.seq <= state.last_seq:
            return
        if event.seq > state.last_seq + 1:
            await self._send_history(state, upto=event.seq - 1)
        await self._send_text(event.text)
        state.last_seq = event.seq

    async def _send_history(self, state: RoomState, *, upto: int | None) -> None:
        """Send stored messages after `state.last_seq` (up to `upto`, or all)."""
        while upto is None or state.last_seq < upto:
            async with self.manager.database.sessions() as session:
                page = await rooms_service.list_messages(
                    session, room=state.room, after_seq=state.last_seq, limit=HISTORY_PAGE
                )
            for message in page:
                if upto is not None and message.seq > upto:
                    return
                await self._send_text(message_frame(message).model_dump_json())
                state.last_seq = message.seq
            if len(page) < HISTORY_PAGE:
                return

    async def _replay(self, replay: Replay) -> None:
        state = replay.state
        name = state.room.name
        if self.rooms.get(name) is not state:
            return  # left (or joined again) before the writer got here
        online = await self.manager.online(name)
        joined = JoinedFrame(
            room=name,
            seq=replay.current,
            online=online,
            online_count=len(online),
            recovered=True,
        )
        await self._send_text(joined.model_dump_json())
        if replay.since is None:
            state.last_seq = replay.current
        else:
            state.last_seq = min(replay.since, replay.current)
            await self._send_history(state, upto=None)
        state.syncing = False
        pending, state.pending = state.pending, []
        for event in pending:
            await self._deliver(event)

    # -- watchdog ------------------------------------------------------------------------

    async def _watch(self) -> None:
        settings = self.settings
        tick = min(
            1.0, settings.ws_heartbeat_timeout_seconds / 4, settings.ws_auth_timeout_seconds / 4
        )
        self.mailbox.on_overflow = self._wake.set
        presence_refreshed = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._wake.wait()
            self._wake.clear()
            if self._close_request is not None:
                raise self._close_request
            if self.mailbox.overflowed.is_set():
                raise CloseConnection(CloseCode.TRY_AGAIN_LATER, "too slow to read")
            now = time.monotonic()
            if now - self.last_seen > settings.ws_heartbeat_timeout_seconds:
                raise CloseConnection(CloseCode.POLICY_VIOLATION, "heartbeat timeout")
            if self.rooms and now - presence_refreshed >= settings.ws_heartbeat_interval_seconds:
                presence_refreshed = now
                await self.manager.refresh_presence(list(self.rooms), self.public, self.id)
            if time.time() >= self.token_expires_at:
                if self.expiry_warned_at is None:
                    self.expiry_warned_at = now
                    self.send(
                        error_text(
                            ErrorCode.TOKEN_EXPIRED,
                            "The access token expired; send `refresh` with a new one "
                            f"within {settings.ws_auth_timeout_seconds:g}s",
                        )
                    )
                elif now - self.expiry_warned_at > settings.ws_auth_timeout_seconds:
                    raise CloseConnection(
                        CloseCode.POLICY_VIOLATION, "access token expired", ErrorCode.TOKEN_EXPIRED
                    )
