"""`Client`: rooms over one WebSocket that is kept up for the caller.

    async with Client(url, tokens=pair) as client:
        await client.join("general")
        await client.send("general", "hello")
        async for message in client.messages("general"):
            ...

The supervisor task (`supervisor.py`) opens a connection, rejoins every room with
`since` = the last `seq` handed on, and on any loss reconnects with jittered
exponential backoff. The caller sees each message once, in order; a `send` is
retried with its `client_id` until its message is seen in the room, so it is stored
once however often it is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Self

import httpx

from townsquare.auth.schemas import TokenPair
from townsquare.client.api import Api
from townsquare.client.backoff import Backoff
from townsquare.client.connection import Connection, Outgoing
from townsquare.client.credentials import Credentials, TokenProvider
from townsquare.client.errors import (
    ApiError,
    AuthenticationFailed,
    ClientClosed,
    ClientError,
    ConnectFailed,
    NotJoined,
    RoomLeft,
    RoomNotFound,
)
from townsquare.client.events import Disconnected, Event, EventQueue
from townsquare.client.feed import RoomFeed
from townsquare.client.outbox import Outbox
from townsquare.client.pacer import Pacer
from townsquare.rooms.protocol import (
    ErrorCode,
    ErrorFrame,
    JoinedFrame,
    JoinFrame,
    LeaveFrame,
    MessageFrame,
    TypingFrame,
    WelcomeFrame,
)
from townsquare.users.schemas import UserPublic

CLOSE_TIMEOUT = 2.0  # for the server's answer to our close frame


class Changes:
    """Wakes every waiter when the client's state changes; waiters re-check their
    condition (one signal instead of a future per condition)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, condition: Callable[[], bool], within: float | None = None) -> bool:
        """Wait until `condition()` holds (True) or `within` seconds pass (False)."""
        try:
            async with asyncio.timeout(within):
                while not condition():
                    await self._event.wait()
        except TimeoutError:
            return condition()
        return True


class _LeftByCaller(Exception):
    """Ends a feed's iterator quietly after `leave()`."""


class Client:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        ws_url: str | None = None,
        tokens: TokenPair | None = None,
        refresh_token: str | None = None,
        token_provider: TokenProvider | None = None,
        credentials: Credentials | None = None,
        connect_timeout: float = 10.0,
        send_timeout: float = 30.0,
        ack_timeout: float = 5.0,
        buffer_size: int = 1000,
        max_frames_per_second: float = 20.0,
        refresh_margin: float | None = None,
        backoff: Backoff | None = None,
        events_size: int = 1000,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`url`: the service's base URL (http://host:port); `ws_url` when its `/ws` is
        served from elsewhere (default: `url` with ws:// or wss://). Credentials: `token` (an
        access token), `tokens` (a pair from `Api.login`: refreshed before expiry),
        `refresh_token`, `token_provider` (called for a new token when needed) or a
        ready `credentials`. `max_frames_per_second`: keep it at or under the
        server's WS_MESSAGES_PER_SECOND (default 20)."""
        if credentials is None:
            if tokens is not None:
                credentials = Credentials.from_pair(tokens, refresh_margin=refresh_margin)
            elif token is not None:
                credentials = Credentials(
                    token,
                    refresh_token=refresh_token,
                    provider=token_provider,
                    refresh_margin=refresh_margin,
                )
            else:
                raise ValueError("Client needs token=, tokens=, or credentials=")
        self.url = url
        self.ws_url = ws_url or url
        self.credentials = credentials
        self.api = Api(url, credentials=credentials, transport=http_transport)
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.ack_timeout = ack_timeout
        self.buffer_size = buffer_size
        self.backoff = backoff or Backoff()
        self.pacer = Pacer(max_frames_per_second)
        self.changes = Changes()
        self.feeds: dict[str, RoomFeed] = {}
        self.outbox = Outbox(self)
        self.connection: Connection | None = None
        self.welcome: WelcomeFrame | None = None
        self.failure: BaseException | None = None
        self.reconnects = 0
        self._events = EventQueue(events_size)
        self._join_refs: dict[str, str] = {}
        self._refs = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect; returns once the first connection is up. Raises `ConnectFailed`
        when none could be made within `connect_timeout` (retrying meanwhile), and
        `AuthenticationFailed` when the credentials are refused."""
        from townsquare.client.supervisor import supervise

        if self._supervisor is not None:
            raise ClientError("the client was started already")
        self._supervisor = asyncio.create_task(supervise(self), name="townsquare-client")
        up = await self.changes.until(
            lambda: self.connection is not None or self.failure is not None,
            self.connect_timeout,
        )
        if self.failure is not None or not up:
            error = self.failure or ConnectFailed(
                f"no connection to {self.url} within {self.connect_timeout:g}s"
            )
            await self.aclose()
            raise error

    async def aclose(self) -> None:
        """Close the connection and stop; iterators end, pending sends raise
        `ClientClosed`."""
        # Taken before the supervisor stops: its cleanup forgets the connection.
        connection = self.connection
        self.fail(ClientClosed("the client is closed"))
        tasks = [task for task in (self._supervisor, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.connection = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)
            connection.abort()  # no-op once closed; frees the socket if the close hung
        await self.api.aclose()

    def fail(self, error: BaseException) -> None:
        """Stop for good: every waiter gets `error` (the first one wins)."""
        if self.failure is not None:
            return
        self.failure = error
        self._events.put(Disconnected(None, str(error), final=True))
        for feed in self.feeds.values():
            feed.fail(error)
        self.outbox.fail_all(error)
        self._events.close()
        self.changes.notify()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, kept until done or the client closes."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- state -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.connection is not None

    @property
    def user(self) -> UserPublic | None:
        """Who the client is signed in as (known once connected)."""
        return self.welcome.user if self.welcome is not None else None

    @property
    def rooms(self) -> list[str]:
        return [name for name, feed in self.feeds.items() if feed.left is None]

    def online(self, room: str) -> list[UserPublic]:
        """Who is in `room` now, as of `joined` and the `presence` events since."""
        return list(self._feed(room).online.values())

    def emit(self, event: Event) -> None:
        self._events.put(event)

    async def events(self) -> AsyncIterator[Event]:
        """Connection changes, presence, typing and `left` notices, until the client
        closes. Bounded: a consumer that falls far behind loses the oldest notices
        (never room messages). One consumer at a time."""
        while (event := await self._events.get()) is not None:
            yield event

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    # -- rooms -------------------------------------------------------------------------

    def next_ref(self, prefix: str) -> str:
        self._refs += 1
        return f"{prefix}{self._refs}"

    async def join(self, room: str, *, since: int | None = None) -> JoinedFrame:
        """Join `room` and return its `joined`. With `since`, every message after that
        `seq` is delivered first; without, messages from now on. The room is rejoined
        after every reconnect until `leave`. Raises `RoomNotFound`."""
        self.check()
        JoinFrame(type="join", room=room, since=since)  # validates the name early
        feed = self.feeds.get(room)
        if feed is None or feed.left is not None or feed.failure is not None:
            feed = RoomFeed(
                room,
                since=since,
                capacity=self.buffer_size,
                fetch=self.history_after,
                rejoin=lambda feed: self.spawn(self.send_join(feed, force=True)),
            )
            self.feeds[room] = feed
            await self.send_join(feed)
        joined = await self.changes.until(
            lambda: feed.joined is not None or feed.failure is not None or self.failure is not None,
            self.send_timeout,
        )
        if feed.failure is not None:
            raise feed.failure
        self.check()
        if not joined or feed.joined is None:
            raise TimeoutError(f"room {room!r} not joined in time")
        return feed.joined

    async def send_join(self, feed: RoomFeed, *, force: bool = False) -> None:
        """Send `join` for `feed` on the current connection, once per connection."""
        connection = self.connection
        if connection is None or (feed.join_sent_on is connection and not force):
            return
        feed.join_sent_on = connection
        ref = self.next_ref("j")
        self._join_refs[ref] = feed.name
        frame = JoinFrame(type="join", room=feed.name, since=feed.position, ref=ref)
        await self.write(connection, frame)

    def join_refused(self, error: ErrorFrame) -> bool:
        """An `error` naming a `join`: a room that is not there (or hidden) ends the
        feed, and `join()` raises. True if `error.ref` was a join."""
        name = self._join_refs.pop(error.ref or "", None)
        if name is None:
            return False
        feed = self.feeds.get(name)
        if feed is not None and error.code is ErrorCode.ROOM_NOT_FOUND:
            del self.feeds[name]
            feed.fail(RoomNotFound(name))
            self.changes.notify()
        return True

    async def leave(self, room: str) -> None:
        """Stop receiving `room`; its iterator ends, its pending sends raise `NotJoined`."""
        feed = self.feeds.pop(room, None)
        if feed is None:
            return
        feed.fail(_LeftByCaller())
        self.outbox.fail_room(room, NotJoined(room))
        connection = self.connection
        if connection is not None and feed.live_on is connection:
            await self.write(connection, LeaveFrame(type="leave", room=room))

    def _feed(self, room: str) -> RoomFeed:
        feed = self.feeds.get(room)
        if feed is None:
            raise NotJoined(room)
        return feed

    async def messages(self, room: str) -> AsyncIterator[MessageFrame]:
        """The room's messages in `seq` order, each once, across reconnects. Ends after
        `leave(room)` or `aclose()`; raises `RoomLeft` when the server removes the
        user from the room. One consumer per room."""
        feed = self._feed(room)
        while True:
            try:
                yield await feed.next()
            except (_LeftByCaller, ClientClosed):
                return

    async def send(self, room: str, body: str, *, client_id: str | None = None) -> MessageFrame:
        """Post `body` to a joined room and return it as stored (with its `seq`). Sent
        again with the same `client_id` after a reconnect or when no confirmation
        came, so it is stored once. Raises `SendTimeout` after `send_timeout`."""
        self.check()
        feed = self._feed(room)
        if feed.left is not None:
            raise RoomLeft(room, feed.left.reason)
        return await self.outbox.send(feed, body, client_id or uuid.uuid4().hex, self.send_timeout)

    async def typing(self, room: str) -> None:
        """Tell the room the user is typing (dropped while disconnected)."""
        feed = self._feed(room)
        connection = self.connection
        if connection is not None and feed.live_on is connection:
            await self.write(connection, TypingFrame(type="typing", room=room))

    async def history_after(self, room: str, after: int, limit: int) -> list[MessageFrame]:
        """Stored messages after `after`, for a feed that is behind; retried with
        backoff while the service is unreachable."""
        backoff = Backoff(first=self.backoff.first, cap=self.backoff.cap)
        while True:
            self.check()
            try:
                page = await self.api.history(room, after_seq=after, limit=limit)
            except ApiError as exc:
                if exc.status == 404:
                    raise RoomNotFound(room) from exc
                if exc.status == 401:
                    raise AuthenticationFailed(f"history refused: {exc.detail}") from exc
                if exc.status < 500 and exc.status != 429:
                    raise
            except httpx.TransportError:
                pass
            else:
                frames = [MessageFrame(**message.model_dump()) for message in page]
                for frame in frames:
                    self.outbox.confirm(frame)
                return frames
            await asyncio.sleep(backoff.next_delay())

    async def write(self, connection: Connection, frame: Outgoing) -> None:
        """Send a frame within the client's frame rate."""
        await self.pacer.take()
        await connection.send(frame)
