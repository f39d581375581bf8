"""The connection manager: the live side of rooms in one process.

It owns the hub (local fan-out above the broker backend), the set of open
connections and room presence, and it is the one place that turns a stored message
into bytes on the broker: each frame is encoded once per message, and every local
recipient is sent the same string.

Presence lives in a `PresenceStore` (Redis when configured, so it spans instances):
one entry per connection and room, with a TTL the connection refreshes from its
watchdog; an instance that dies stops refreshing and its users drop out within the
TTL. A `control` channel carries "end this user's sessions" to every instance.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from townsquare.auth.revocations import AccountChange, ChangeKind, SessionRevocations
from townsquare.config import Settings
from townsquare.platform.broker.hub import Hub
from townsquare.platform.database import Database
from townsquare.platform.instances import InstanceLoad
from townsquare.platform.presence import PresenceStore, PresenceUnavailable
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
CONTROL_CHANNEL = "control"
_STORED = b"M"  # a stored message: b"M<seq>\n<frame json>"
_EPHEMERAL = b"E"  # presence, typing: b"E\n<frame json>"
_CONTROL = b"C"  # instance-wide commands: b"C\n<json>"


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
    if channel == CONTROL_CHANNEL and kind == _CONTROL:
        return RoomEvent(room="", seq=None, text=body.decode())
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


class _ControlSink:
    """Receives the control channel for the manager: account changes made on any
    instance, handed to the local listeners of `SessionRevocations`."""

    def __init__(self, manager: ConnectionManager) -> None:
        self.manager = manager
        self._tasks: set[asyncio.Task[None]] = set()

    def offer(self, item: RoomEvent) -> bool:
        try:
            command = json.loads(item.text)
            if command.get("origin") == self.manager.hub.instance_id:
                return True  # this instance told its own listeners already
            change = AccountChange(
                user_id=int(command["user_id"]),
                kind=ChangeKind(command["kind"]),
                session_id=command.get("session_id"),
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed control command")
            return True
        task = asyncio.create_task(self.manager.revocations.deliver(change))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True


class ConnectionManager:
    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        hub: Hub[RoomEvent],
        presence: PresenceStore,
        revocations: SessionRevocations,
    ) -> None:
        self.settings = settings
        self.revocations = revocations
        self.database = database
        self.hub = hub
        self.presence = presence
        # Three heartbeats: a live connection refreshes its entries well within it.
        self.presence_ttl = 3 * settings.ws_heartbeat_interval_seconds
        self.connections: set[Connection] = set()
        self.accepting = True
        self._control = _ControlSink(self)
        self._messages_published = 0  # for the admin page (platform/instances.py)

    async def start(self) -> None:
        await self.hub.subscribe(CONTROL_CHANNEL, self._control)
        self.revocations.set_transport(self.publish_account_change)
        self.revocations.add_listener(self.on_account_change)

    def register(self, connection: Connection) -> None:
        self.connections.add(connection)

    def unregister(self, connection: Connection) -> None:
        self.connections.discard(connection)

    async def publish_message(self, message: MessageRead) -> None:
        """Deliver a stored message to the room, here and in every other process.

        Every new message, from `/ws` `send` or from the REST route, passes here once
        (the counting point for messages in)."""
        self._messages_published += 1
        text = message_frame(message).model_dump_json()
        payload = b"%b%d\n%b" % (_STORED, message.seq, text.encode())
        await self.hub.publish(room_channel(message.room), payload)

    def load(self) -> InstanceLoad:
        """What this instance carries now: sockets, rooms in use, messages published."""
        rooms = {room for connection in self.connections for room in connection.rooms}
        return InstanceLoad(len(self.connections), len(rooms), self._messages_published)

    async def _publish_ephemeral(self, room: str, frame: PresenceFrame | TypingEventFrame) -> None:
        payload = _EPHEMERAL + b"\n" + frame.model_dump_json().encode()
        await self.hub.publish(room_channel(room), payload)

    async def publish_typing(self, room: str, user: UserPublic) -> None:
        await self._publish_ephemeral(room, TypingEventFrame(room=room, user=user))

    # -- sessions ----------------------------------------------------------------------

    async def publish_account_change(self, change: AccountChange) -> None:
        """Tell every other instance."""
        command = json.dumps(
            {
                "origin": self.hub.instance_id,
                "user_id": change.user_id,
                "kind": change.kind,
                "session_id": change.session_id,
            }
        ).encode()
        await self.hub.publish(CONTROL_CHANNEL, _CONTROL + b"\n" + command)

    async def on_account_change(self, change: AccountChange) -> None:
        if change.kind is ChangeKind.SESSIONS_ENDED:
            self.close_user_connections(change.user_id)
        elif change.kind is ChangeKind.SESSION_ENDED:
            for connection in list(self.connections):
                if (
                    connection.user.id == change.user_id
                    and connection.session_id == change.session_id
                ):
                    connection.request_close(CloseCode.POLICY_VIOLATION, "session revoked")

    def close_user_connections(self, user_id: int) -> None:
        for connection in list(self.connections):
            if connection.user.id == user_id:
                connection.request_close(CloseCode.POLICY_VIOLATION, "session revoked")

    # -- presence ----------------------------------------------------------------------

    async def _online_ids(self, room: str) -> set[str] | None:
        try:
            return await self.presence.online(room)
        except PresenceUnavailable:
            logger.warning("presence store unavailable; presence of %s unknown", room)
            return None

    async def enter(self, room: str, user: UserPublic, connection_id: str) -> None:
        key = _presence_key(user)
        before = await self._online_ids(room)
        try:
            await self.presence.mark_online(room, key, connection_id, self.presence_ttl)
        except PresenceUnavailable:
            logger.warning("presence store unavailable; %s not marked online", user.id)
        if before is not None and key not in before:
            frame = PresenceFrame(room=room, user=user, state=PresenceState.ONLINE)
            await self._publish_ephemeral(room, frame)

    async def refresh_presence(
        self, rooms: list[str], user: UserPublic, connection_id: str
    ) -> None:
        key = _presence_key(user)
        for room in rooms:
            try:
                await self.presence.refresh(room, key, connection_id, self.presence_ttl)
            except PresenceUnavailable:
                logger.warning("presence store unavailable; entry of %s not refreshed", user.id)
                return

    async def exit(self, room: str, user: UserPublic, connection_id: str) -> None:
        key = _presence_key(user)
        try:
            await self.presence.mark_offline(room, key, connection_id)
        except PresenceUnavailable:
            logger.warning("presence store unavailable; %s left %s unrecorded", user.id, room)
            return
        after = await self._online_ids(room)
        # Offline only when no connection of the user is left, on any instance.
        if after is not None and key not in after:
            frame = PresenceFrame(room=room, user=user, state=PresenceState.OFFLINE)
            await self._publish_ephemeral(room, frame)

    async def online(self, room: str) -> list[UserPublic]:
        users = []
        for key in await self._online_ids(room) or set():
            try:
                users.append(UserPublic.model_validate_json(key))
            except ValueError:
                logger.warning("ignored a malformed presence entry in %s", room)
        return sorted(users, key=lambda user: user.id)

    # -- shutdown ----------------------------------------------------------------------

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


def _presence_key(user: UserPublic) -> str:
    # The store is generic over strings; the user's public view is all a `joined`
    # frame needs, so it is the key (no database read to list who is online).
    return user.model_dump_json()
