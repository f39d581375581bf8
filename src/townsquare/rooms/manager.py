"""The room engine of one process: feeds, connections, presence and authority.

- One `RoomFeed` per room with members here, subscribed once to the broker.
- One `MessageStore`: group commit per room; each stored batch is published once
  (here at once, then to the other processes) by `_publish_stored`.
- Presence in a `PresenceStore` (Redis across instances), keyed by user id, with
  the online/offline decisions made atomically by the store; the entries of every
  local connection are refreshed in one round trip per heartbeat interval, and the
  rooms held here are swept for users of instances that died.
- Authority follows changes live: a member removed, a room deleted or made private,
  an account changed, on any instance, reaches every instance over the control
  channel, and the affected connections get `left` at once.
- A join of a public room reads the room from a short-lived per-process view
  (`RoomViews`) instead of the database: any authority change forgets it, and a join
  that saw the view change while it waited checks again, fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from townsquare.auth import accounts
from townsquare.auth.exceptions import EmailNotVerified, InvalidToken
from townsquare.auth.principals import PrincipalCache
from townsquare.auth.revocations import AccountChange, ChangeKind, SessionRevocations
from townsquare.auth.tokens import AccessClaims, TokenCodec
from townsquare.config import Settings
from townsquare.platform.broker.envelope import Envelope
from townsquare.platform.broker.hub import Hub
from townsquare.platform.database import UNAVAILABLE as DATABASE_UNAVAILABLE
from townsquare.platform.database import Database
from townsquare.platform.errors import AppError, DatabaseBusy, DatabaseUnavailable
from townsquare.platform.instances import InstanceLoad
from townsquare.platform.metrics import Metrics
from townsquare.platform.presence import Entry, Online, PresenceStore, PresenceUnavailable
from townsquare.rooms import history
from townsquare.rooms import service as rooms_service
from townsquare.rooms.account import Account
from townsquare.rooms.errors import CloseConnection, error_text
from townsquare.rooms.exceptions import RoomNotFound
from townsquare.rooms.feed import RoomFeed
from townsquare.rooms.protocol import (
    CloseCode,
    ErrorCode,
    LeftFrame,
    LeftReason,
    PresenceFrame,
    PresenceState,
    TypingEventFrame,
)
from townsquare.rooms.schemas import MessageRead
from townsquare.rooms.store import MAX_BATCH, MessageStore, RoomRef
from townsquare.rooms.throttle import Throttles
from townsquare.users.schemas import UserPublic

if TYPE_CHECKING:
    from townsquare.rooms.connection import Connection

logger = logging.getLogger(__name__)
NOT_VERIFIED = EmailNotVerified.detail

CONTROL_CHANNEL = "control"
# `joined.online` lists at most this many users; `online_count` is exact.
ONLINE_LIST_LIMIT = 100
# A feed without members stays this long, so a quick rejoin finds its ring warm.
FEED_LINGER_SECONDS = 10.0
HOUSEKEEPING_TICK = 1.0
MAX_TOKEN_LENGTH = 4096
# What a handshake meets when the database cannot serve it now (closed 1013).
_BUSY: tuple[type[Exception], ...] = (DatabaseBusy, DatabaseUnavailable, *DATABASE_UNAVAILABLE)
# How long a join may trust a public room's view without reading it again: the safety
# net for a change whose control message never came (the broker was down meanwhile).
ROOM_VIEW_TTL = 5.0


def room_channel(room: str) -> str:
    return "room:" + room


class JoinedFrames:
    """`JoinedFrame`s' JSON, built without a model per listed user (a join lists up to
    100 of them; the shape is checked against the model in the tests). The listed
    users' JSON is kept for the next join, which in a busy room lists the same users."""

    def __init__(self) -> None:
        self._users: list[tuple[int, str]] = []
        self._online = "[]"

    def text(
        self, room: str, seq: int, users: list[tuple[int, str]], count: int, recovered: bool
    ) -> str:
        if users != self._users:
            listed = [{"id": user_id, "name": name} for user_id, name in users]
            self._users, self._online = users, to_json(listed).decode()
        head = to_json({"type": "joined", "room": room, "seq": seq}).decode()[:-1]
        state = "true" if recovered else "false"
        return f'{head},"online":{self._online},"online_count":{count},"recovered":{state}}}'


class RoomViews:
    """Public rooms by name (id and name), as the database said within `ttl` seconds,
    for `join`. Only public rooms are kept (a private one needs the member list, read
    fresh at every join), and only rooms that exist. `forget` (any authority change of
    the room, on any instance) drops a room and bumps `epoch`: a join that read the
    view before a change and finishes after it checks again against the database."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self.epoch = 0
        self._rooms: dict[str, tuple[int, str, float]] = {}

    def get(self, name: str) -> tuple[int, str] | None:
        view = self._rooms.get(name)
        if view is None:
            return None
        if view[2] <= self.clock():
            del self._rooms[name]
            return None
        return view[0], view[1]

    def put(self, room_id: int, name: str, epoch: int) -> None:
        """Keep a public room read when `epoch` was current (unless it moved since)."""
        if epoch == self.epoch:
            self._rooms[name] = (room_id, name, self.clock() + self.ttl)

    def forget(self, name: str) -> None:
        """Drop `name`; joins under way check again."""
        self.epoch += 1
        self._rooms.pop(name, None)

    def changed(self) -> None:
        """Something a join checks changed (an account): joins under way check again."""
        self.epoch += 1


class ConnectionManager:
    def __init__(
        self,
        *,
        settings: Settings,
        database: Database,
        hub: Hub,
        presence: PresenceStore,
        revocations: SessionRevocations,
        tokens: TokenCodec,
        principals: PrincipalCache,
        metrics: Metrics | None = None,
    ) -> None:
        self.tokens = tokens
        self.principals = principals
        self.settings = settings
        self.database = database
        self.hub = hub
        self.presence = presence
        self.revocations = revocations
        self.metrics = metrics
        # Three heartbeats: a live connection's entries are refreshed well within it.
        self.presence_ttl = 3 * settings.ws_heartbeat_interval_seconds
        self.connections: set[Connection] = set()
        self.feeds: dict[str, RoomFeed] = {}
        self._opening: dict[str, asyncio.Future[RoomFeed]] = {}
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self.feed_linger = FEED_LINGER_SECONDS
        self.store = MessageStore(
            database,
            self._publish_stored,
            # A batch reaches every member's send queue in one turn of the loop, before
            # any writer runs: a batch larger than the queue would close with 1013 a
            # member that reads as fast as it can. Half of it leaves room for the
            # frames of the turn (presence, typing) and the tail of the last batch.
            max_batch=min(MAX_BATCH, settings.ws_send_queue_size // 2),
            require_verified_email=settings.require_verified_email,
        )
        self.throttles = Throttles(settings.ws_messages_per_second)
        self.room_views = RoomViews(ROOM_VIEW_TTL)
        self._joined = JoinedFrames()
        self.accepting = True
        self._tasks: set[asyncio.Task[Any]] = set()
        self._housekeeping: asyncio.Task[None] | None = None
        self._messages_published = 0  # for the admin page (platform/instances.py)

    async def start(self) -> None:
        await self.hub.subscribe(CONTROL_CHANNEL, self._on_control)
        self.revocations.set_transport(self._publish_account_change)
        self.revocations.add_listener(self.on_account_change)
        self._housekeeping = asyncio.create_task(self._housekeep(), name="rooms-housekeeping")

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.store.close()
        for handle in self._lingering.values():
            handle.cancel()
        for feed in list(self.feeds.values()):
            await self._close_feed(feed)
        for task in list(self._tasks):
            task.cancel()

    def load(self) -> InstanceLoad:
        """What this instance carries now: sockets, rooms in use, messages published."""
        rooms = sum(1 for feed in self.feeds.values() if feed.subscriptions)
        return InstanceLoad(len(self.connections), rooms, self._messages_published)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections -------------------------------------------------------------------

    def register(self, connection: Connection) -> None:
        self.connections.add(connection)

    def unregister(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.throttles.release(connection.account.id)
        self._count(connection)

    async def authenticate(self, token: str) -> tuple[Account, AccessClaims]:
        """The account an access token stands for, from the cache of signed-in logins
        (no database connection held while the socket waits), and the token's claims;
        a `CloseConnection` (1008, invalid_token) when it stands for nothing valid."""
        try:
            if len(token) > MAX_TOKEN_LENGTH:
                raise InvalidToken()
            claims = self.tokens.decode_access(token)
            principal = await self.principals.principal(claims)
        except _BUSY as exc:
            # A pool timeout or the database down: the client retries later (1013).
            raise CloseConnection(CloseCode.TRY_AGAIN_LATER, "server busy, retry shortly") from exc
        except AppError as exc:
            raise CloseConnection(
                CloseCode.POLICY_VIOLATION, exc.message, ErrorCode.INVALID_TOKEN
            ) from exc
        return Account(principal.id, principal.name, principal.is_admin), claims

    async def refresh_token(self, connection: Connection, token: str) -> None:
        """A new access token for an open connection (same user)."""
        account, claims = await self.authenticate(token)
        if account.id != connection.account.id:
            raise CloseConnection(
                CloseCode.POLICY_VIOLATION, "token is for another user", ErrorCode.INVALID_TOKEN
            )
        connection.account = account
        connection.session_id = claims.session_id
        connection.token_expires_at = float(claims.expires_at)
        connection.expiry_warned_at = None

    # -- messages ----------------------------------------------------------------------

    async def send_message(
        self,
        room: RoomRef,
        *,
        author: UserPublic,
        body: str,
        client_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[MessageRead, bool]:
        """Store a message (group commit), deliver it to the room everywhere; it and
        whether it is new. The one way in for REST and WebSocket alike."""
        return await self.store.store(
            room, author=author, body=body, client_id=client_id, idempotency_key=idempotency_key
        )

    def submit_message(
        self, room: RoomRef, *, author: UserPublic, body: str, client_id: str | None
    ) -> asyncio.Future[tuple[MessageRead, bool]]:
        """`send_message` without waiting: the future completes after the commit."""
        return asyncio.ensure_future(
            self.store.store(room, author=author, body=body, client_id=client_id)
        )

    async def _publish_stored(self, room: RoomRef, messages: list[MessageRead]) -> None:
        envelopes = [
            self.hub.envelope(history.message_text(message), seq=message.seq)
            for message in messages
        ]
        await self.hub.publish_many(room_channel(room.name), envelopes)
        self._messages_published += len(messages)
        if self.metrics is not None:
            self.metrics.room_messages.inc(len(messages))

    async def publish_typing(self, room: str, user: UserPublic) -> None:
        frame = TypingEventFrame(room=room, user=user)
        await self.hub.publish(room_channel(room), self.hub.envelope(frame.model_dump_json()))

    async def _publish_presence(self, room: str, user: UserPublic, state: PresenceState) -> None:
        frame = PresenceFrame(room=room, user=user, state=state)
        await self.hub.publish(room_channel(room), self.hub.envelope(frame.model_dump_json()))

    async def history(
        self, room: RoomRef, after: int, upto: int, limit: int
    ) -> list[tuple[int, str]]:
        return await history.frames(self.database, room, after=after, upto=upto, limit=limit)

    # -- feeds -------------------------------------------------------------------------

    async def open_feed(self, room: RoomRef) -> RoomFeed:
        """The room's feed, opened (subscribed, positioned) if this process had none.
        Concurrent first joins share one opening; no lock is held while waiting."""
        feed = self.feeds.get(room.name)
        if feed is not None and feed.room.id == room.id:
            self._stop_lingering(room.name)
            return feed
        opening = self._opening.get(room.name)
        if opening is not None:
            return await asyncio.shield(opening)
        opening = self._opening[room.name] = asyncio.get_running_loop().create_future()
        try:
            if feed is not None:  # a room of that name was deleted and made again
                await self._close_feed(feed)
            feed = RoomFeed(
                room,
                history=self.history,
                buffer_size=self.settings.ws_room_buffer,
                buffer_bytes=self.settings.ws_room_buffer_bytes,
                gap_hold=self.settings.ws_gap_hold_seconds,
                on_idle=self._feed_idle,
            )
            await self.hub.subscribe(room_channel(room.name), feed.on_envelope)
            try:
                # Read after subscribing: any message stored later arrives live.
                async with self.database.sessions() as session:
                    feed.start(await rooms_service.last_seq(session, room_id=room.id))
            except BaseException:
                await self.hub.unsubscribe(room_channel(room.name), feed.on_envelope)
                raise
            self.feeds[room.name] = feed
            opening.set_result(feed)
            self._feed_idle(feed)  # lingers until its first member subscribes
            return feed
        except BaseException as exc:
            opening.set_exception(exc)
            opening.exception()  # retrieved: joiners waiting on it got it already
            raise
        finally:
            del self._opening[room.name]

    def _feed_idle(self, feed: RoomFeed) -> None:
        name = feed.room.name
        self._stop_lingering(name)
        loop = asyncio.get_running_loop()
        self._lingering[name] = loop.call_later(self.feed_linger, self._linger_over, feed)

    def _stop_lingering(self, name: str) -> None:
        handle = self._lingering.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _linger_over(self, feed: RoomFeed) -> None:
        self._lingering.pop(feed.room.name, None)
        if not feed.subscriptions and self.feeds.get(feed.room.name) is feed:
            # Detached at once, so a join from now on opens a new feed; the rest of
            # the closing (its gap filler) finishes in the background.
            self._detach_feed(feed)
            self._spawn(feed.aclose())

    def _detach_feed(self, feed: RoomFeed) -> None:
        name = feed.room.name
        if self.feeds.get(name) is feed:
            del self.feeds[name]
        self._stop_lingering(name)
        feed.close()
        self.hub.detach(room_channel(name), feed.on_envelope)

    async def _close_feed(self, feed: RoomFeed) -> None:
        self._detach_feed(feed)
        await feed.aclose()

    # -- join and leave ---------------------------------------------------------------

    async def join(
        self, connection: Connection, name: str, *, since: int | None, ref: str | None
    ) -> None:
        from townsquare.rooms.connection import Replay

        if name in connection.rooms:
            await self.leave(connection, name)
        epoch = self.room_views.epoch
        try:
            room = await self._joinable(connection, name)
        except RoomNotFound:
            connection.send_text(error_text(ErrorCode.ROOM_NOT_FOUND, "Room not found", ref))
            return
        if room is None:
            connection.send_text(error_text(ErrorCode.EMAIL_NOT_VERIFIED, NOT_VERIFIED, ref))
            return
        feed = await self.open_feed(room)
        entry = self._entry(connection, name)
        online = await self._enter(entry, connection.account.public)
        if self.room_views.epoch != epoch and connection.closing is None:
            # Authority changed while we waited (a room made private, a member removed,
            # an account changed): what was read may be stale; read it again, fresh.
            try:
                again = await self._joinable(connection, name, fresh=True)
            except RoomNotFound:
                again = None
            if again is None or again.id != room.id:
                await self._exit(entry, connection.account.public)
                connection.send_text(error_text(ErrorCode.ROOM_NOT_FOUND, "Room not found", ref))
                return
        if connection.closing is not None or name in connection.rooms or feed.closed:
            # Closed, joined again or the room went away while we waited: undo.
            await self._exit(entry, connection.account.public)
            return
        # From here to the queued replay, no await: every message after `upto` reaches
        # the connection live, behind the replay in its outbox.
        upto = feed.last_seq
        recovered = True
        if since is None:
            since = sent = upto
        elif upto - since > self.settings.ws_replay_max:
            # Too much to replay: none at all. The client pages the history over REST
            # and joins again with a newer `since`.
            recovered, sent = False, upto
            since = upto
        else:
            sent = max(since, upto)
        subscription = feed.subscribe(connection, sent)
        connection.rooms[name] = subscription
        joined = self._joined.text(name, upto, online.users, online.count, recovered)
        connection.outbox.push(Replay(subscription, joined, since, upto, recovered))

    async def _joinable(
        self, connection: Connection, name: str, *, fresh: bool = False
    ) -> RoomRef | None:
        """The room `connection` may join now (`RoomNotFound` otherwise), or None when
        its account may not take part yet (email not verified). A public room comes
        from the views while they hold it and the broker carries changes; anything
        else is read from the database, and a public room read is kept."""
        user_id = connection.account.id
        if not await accounts.may_participate(self.database, self.settings, user_id):
            return None
        views = self.room_views
        if not fresh and self.hub.is_healthy():
            view = views.get(name)
            if view is not None:
                return RoomRef(*view)
        epoch = views.epoch
        room_id, room_name, private = await rooms_service.joinable_room(
            self.database, name=name, user_id=user_id
        )
        if not private:
            views.put(room_id, room_name, epoch)
        return RoomRef(room_id, room_name)

    async def leave(self, connection: Connection, name: str) -> None:
        subscription = connection.rooms.pop(name, None)
        if subscription is None:
            return
        subscription.feed.unsubscribe(subscription)
        await self._exit(self._entry(connection, name), connection.account.public)

    async def leave_all(self, connection: Connection) -> None:
        for name in list(connection.rooms):
            await self.leave(connection, name)

    def _entry(self, connection: Connection, room: str) -> Entry:
        return Entry(room, connection.account.id, connection.account.name, connection.id)

    # -- presence ----------------------------------------------------------------------

    async def _enter(self, entry: Entry, user: UserPublic) -> Online:
        try:
            entered = await self.presence.enter(entry, self.presence_ttl, limit=ONLINE_LIST_LIMIT)
        except PresenceUnavailable:
            logger.warning("presence store unavailable; %s not marked online", entry.user_id)
            return Online(1, [(user.id, user.name)])
        if entered.came_online:
            await self._publish_presence(entry.room, user, PresenceState.ONLINE)
        return entered.online

    async def _exit(self, entry: Entry, user: UserPublic) -> None:
        try:
            went_offline = await self.presence.leave(entry)
        except PresenceUnavailable:
            logger.warning("presence store unavailable; %s left %s unrecorded", user.id, entry.room)
            return
        if went_offline:
            await self._publish_presence(entry.room, user, PresenceState.OFFLINE)

    async def online(self, room: str) -> Online:
        return await self.presence.online(room, limit=ONLINE_LIST_LIMIT)

    async def _refresh_presence(self) -> None:
        entries = [
            self._entry(connection, room)
            for connection in self.connections
            for room in connection.rooms
        ]
        try:
            back = await self.presence.refresh(entries, self.presence_ttl)
            for entry in back:
                user = UserPublic(id=entry.user_id, name=entry.name)
                await self._publish_presence(entry.room, user, PresenceState.ONLINE)
            for room in list(self.feeds):
                for user_id, user_name in await self.presence.sweep(room):
                    user = UserPublic(id=user_id, name=user_name)
                    await self._publish_presence(room, user, PresenceState.OFFLINE)
        except PresenceUnavailable:
            logger.warning("presence store unavailable; entries not refreshed")

    # -- authority ---------------------------------------------------------------------

    async def room_changed(self, room: str, *, user_id: int | None, reason: LeftReason) -> None:
        """After a committed change of who may be in `room`: `user_id` removed, or
        (None) the room deleted or made private. Every instance re-checks its members."""
        command = {"op": "room", "room": room, "user_id": user_id, "reason": reason}
        self.room_views.forget(room)
        await self._apply_room_change(room, user_id, reason)
        await self._publish_command(command)

    async def _apply_room_change(self, room: str, user_id: int | None, reason: LeftReason) -> None:
        feed = self.feeds.get(room)
        if feed is None:
            return
        subscriptions = [
            s for s in feed.subscriptions if user_id is None or s.connection.account.id == user_id
        ]
        if not subscriptions:
            return
        if reason is LeftReason.ROOM_DELETED:
            allowed: set[int] = set()
        else:
            async with self.database.sessions() as session:
                allowed = await rooms_service.users_with_access(
                    session,
                    room_id=feed.room.id,
                    user_ids={s.connection.account.id for s in subscriptions},
                )
        for subscription in subscriptions:
            if subscription.connection.account.id not in allowed:
                await self._remove(subscription.connection, room, reason)
        if reason is LeftReason.ROOM_DELETED:
            await self._close_feed(feed)

    async def _remove(self, connection: Connection, room: str, reason: LeftReason) -> None:
        left = LeftFrame(room=room, reason=reason).model_dump_json()
        if connection.remove_from(room, reason, left) is not None:
            await self._exit(self._entry(connection, room), connection.account.public)

    async def on_account_change(self, change: AccountChange) -> None:
        # A join under way reads again what it read before this change (an account
        # disabled also ends its sessions, and so its sockets, on every instance).
        self.room_views.changed()
        mine = [c for c in self.connections if c.account.id == change.user_id]
        if change.kind is ChangeKind.SESSIONS_ENDED:
            for connection in mine:
                connection.close_soon(CloseCode.POLICY_VIOLATION, "session revoked")
        elif change.kind is ChangeKind.SESSION_ENDED:
            for connection in mine:
                if connection.session_id == change.session_id:
                    connection.close_soon(CloseCode.POLICY_VIOLATION, "session revoked")
        elif mine:
            await self._recheck_account(change.user_id, mine)

    async def _recheck_account(self, user_id: int, connections: list[Connection]) -> None:
        async with self.database.sessions() as session:
            account = await rooms_service.account_of(session, user_id)
            rooms = {room: sub.feed.room.id for c in connections for room, sub in c.rooms.items()}
            allowed = {
                room
                for room, room_id in rooms.items()
                if account is not None
                and user_id
                in await rooms_service.users_with_access(
                    session, room_id=room_id, user_ids={user_id}
                )
            }
        for connection in connections:
            if account is not None:
                connection.account = account
            for room in [room for room in connection.rooms if room not in allowed]:
                await self._remove(connection, room, LeftReason.ACCESS_REVOKED)

    # -- the control channel -----------------------------------------------------------

    async def _publish_account_change(self, change: AccountChange) -> None:
        command = {
            "op": "account",
            "user_id": change.user_id,
            "kind": change.kind,
            "session_id": change.session_id,
        }
        await self._publish_command(command)

    async def _publish_command(self, command: dict[str, Any]) -> None:
        await self.hub.publish(CONTROL_CHANNEL, self.hub.envelope(json.dumps(command)))

    def _on_control(self, envelope: Envelope) -> None:
        if envelope.origin == self.hub.instance_id:
            return  # this instance acted before publishing
        try:
            command = json.loads(envelope.body)
            if command["op"] == "account":
                change = AccountChange(
                    user_id=int(command["user_id"]),
                    kind=ChangeKind(command["kind"]),
                    session_id=command.get("session_id"),
                )
                self._spawn(self.revocations.deliver(change))
            elif command["op"] == "room":
                user_id = command.get("user_id")
                self.room_views.forget(str(command["room"]))
                self._spawn(
                    self._apply_room_change(
                        str(command["room"]),
                        None if user_id is None else int(user_id),
                        LeftReason(command["reason"]),
                    )
                )
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed control command")

    # -- housekeeping ------------------------------------------------------------------

    async def _housekeep(self) -> None:
        interval = self.settings.ws_heartbeat_interval_seconds
        refreshed = time.monotonic()
        while True:
            await asyncio.sleep(min(HOUSEKEEPING_TICK, interval))
            now, wall = time.monotonic(), time.time()
            for connection in list(self.connections):
                connection.watch(now, wall)
                self._count(connection)
            if now - refreshed >= interval:
                refreshed = now
                try:
                    await self._refresh_presence()
                except Exception:
                    logger.exception("presence refresh failed")

    def _count(self, connection: Connection) -> None:
        if self.metrics is None:
            return
        if connection.sent:
            self.metrics.websocket_messages_out.inc(connection.sent)
            connection.sent = 0
        if connection.received:
            self.metrics.websocket_messages_in.inc(connection.received)
            connection.received = 0

    # -- shutdown ----------------------------------------------------------------------

    async def shutdown(self, reason: str = "server restarting", grace: float = 10.0) -> None:
        """Stop accepting, send `bye {reason}` to every connection and close it with
        1012 (clients reconnect elsewhere); wait up to `grace` seconds for them."""
        self.accepting = False
        connections = list(self.connections)
        for connection in connections:
            connection.close_soon(CloseCode.SERVICE_RESTART, reason)
        if connections:
            waits = [asyncio.ensure_future(c.closed.wait()) for c in connections]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for wait in pending:
                wait.cancel()
            if pending:
                logger.warning("%d WebSocket(s) still open after shutdown", len(pending))
