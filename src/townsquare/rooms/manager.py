"""The connection manager: the live side of rooms in one process.

It owns the hub (local fan-out above the broker backend), the set of open
connections and the room presence of this process, and it is the one place that
turns a stored message into bytes on the broker: each frame is encoded once per
message, and every local recipient is sent the same string.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from townsquare.config import Settings
from townsquare.platform.broker.hub import Hub
from townsquare.platform.database import Database
from townsquare.rooms.protocol import (
    CloseCode,
    MessageFrame,
    PresenceFrame,
    PresenceState,
    TypingEventFrame,
)
from townsquare.rooms.schemas import MessageRead
from townsquare.users.schemas import UserPublic

if TYPE_CHECKING:
    from townsquare.rooms.connection import Connection

logger = logging.getLogger(__name__)

_CHANNEL_PREFIX = "room:"
_STORED = b"M"  # a stored message: b"M<seq>\n<frame json>"
_EPHEMERAL = b"E"  # presence, typing: b"E\n<frame json>"


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A frame for a room's connections, decoded once per process and shared."""

    room: str
    seq: int | None  # None for frames that are not stored (presence, typing)
    text: str


def room_channel(room: str) -> str:
    return _CHANNEL_PREFIX + room


def decode_event(channel: str, payload: bytes) -> RoomEvent:
    header, _, body = payload.partition(b"\n")
    kind, seq = header[:1], header[1:]
    if not channel.startswith(_CHANNEL_PREFIX) or kind not in (_STORED, _EPHEMERAL):
        raise ValueError(f"not a room event on {channel}")
    return RoomEvent(
        room=channel.removeprefix(_CHANNEL_PREFIX),
        seq=int(seq) if kind == _STORED else None,
        text=body.decode(),
    )


def message_frame(message: MessageRead) -> MessageFrame:
    return MessageFrame(
        room=message.room,
        id=message.id,
        seq=message.seq,
        author=message.author,
        body=message.body,
        sent_at=message.sent_at,
        client_id=message.client_id,
    )


class Presence:
    """Who is connected to which room in this process (a user may have several
    connections; they go offline when the last one leaves)."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[int, tuple[UserPublic, int]]] = {}

    def join(self, room: str, user: UserPublic) -> bool:
        users = self._rooms.setdefault(room, {})
        _, count = users.get(user.id, (user, 0))
        users[user.id] = (user, count + 1)
        return count == 0

    def leave(self, room: str, user: UserPublic) -> bool:
        users = self._rooms.get(room, {})
        if user.id not in users:
            return False
        _, count = users[user.id]
        if count > 1:
            users[user.id] = (user, count - 1)
            return False
        del users[user.id]
        if not users:
            self._rooms.pop(room, None)
        return True

    def online(self, room: str) -> list[UserPublic]:
        return [user for user, _ in self._rooms.get(room, {}).values()]


class ConnectionManager:
    def __init__(self, *, settings: Settings, database: Database, hub: Hub[RoomEvent]) -> None:
        self.settings = settings
        self.database = database
        self.hub = hub
        self.presence = Presence()
        self.connections: set[Connection] = set()
        self.accepting = True

    def register(self, connection: Connection) -> None:
        self.connections.add(connection)

    def unregister(self, connection: Connection) -> None:
        self.connections.discard(connection)

    async def publish_message(self, message: MessageRead) -> None:
        """Deliver a stored message to the room, here and in every other process.

        Every new message, from `/ws` `send` or from the REST route, passes here once
        (the counting point for messages in)."""
        text = message_frame(message).model_dump_json()
        payload = b"%b%d\n%b" % (_STORED, message.seq, text.encode())
        await self.hub.publish(room_channel(message.room), payload)

    async def _publish_ephemeral(self, room: str, frame: PresenceFrame | TypingEventFrame) -> None:
        payload = _EPHEMERAL + b"\n" + frame.model_dump_json().encode()
        await self.hub.publish(room_channel(room), payload)

    async def publish_typing(self, room: str, user: UserPublic) -> None:
        await self._publish_ephemeral(room, TypingEventFrame(room=room, user=user))

    async def enter(self, room: str, user: UserPublic) -> None:
        if self.presence.join(room, user):
            frame = PresenceFrame(room=room, user=user, state=PresenceState.ONLINE)
            await self._publish_ephemeral(room, frame)

    async def exit(self, room: str, user: UserPublic) -> None:
        if self.presence.leave(room, user):
            frame = PresenceFrame(room=room, user=user, state=PresenceState.OFFLINE)
            await self._publish_ephemeral(room, frame)

    async def shutdown(self, reason: str = "server restarting", grace: float = 10.0) -> None:
        """Stop accepting, send `bye {reason}` to every connection and close it with
        1012 (clients reconnect elsewhere); wait up to `grace` seconds for them."""
        self.accepting = False
        connections = list(self.connections)
        for connection in connections:
            connection.request_close(CloseCode.SERVICE_RESTART, reason)
        if connections:
            waits = [asyncio.ensure_future(c.closed.wait()) for c in connections]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for wait in pending:
                wait.cancel()
            if pending:
                logger.warning("%d WebSocket(s) still open after shutdown", len(pending))
