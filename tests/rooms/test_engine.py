"""The room engine in one process, driven directly: replay from the ring or from
history, the replay cap, and gaps filled once per process (SQL statements counted);
`join` of a public room reading the room from the per-process views (any authority
change forgets them, and a join under way while one happens checks again)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from fastapi import FastAPI
from sqlalchemy import event
from starlette.websockets import WebSocket

from tests.conftest import make_settings
from tests.support import databases
from townsquare.main import create_app
from townsquare.platform.broker.envelope import Envelope
from townsquare.platform.database import Database
from townsquare.platform.presence import Entered, Entry
from townsquare.rooms import history
from townsquare.rooms import service as rooms_service
from townsquare.rooms.account import Account
from townsquare.rooms.connection import Connection
from townsquare.rooms.manager import ConnectionManager, JoinedFrames
from townsquare.rooms.models import Room
from townsquare.rooms.protocol import JoinedFrame, LeftReason, MessageFrame
from townsquare.rooms.store import MessageStore, RoomRef
from townsquare.users import service as users_service
from townsquare.users.models import User
from townsquare.users.schemas import UserPublic

Frame = dict[str, Any]


class Recorder:
    """A connection's raw ASGI send: records frames, lets a test wait for one."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.changed = asyncio.Event()

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        self.frames.append(json.loads(message["text"]))
        self.changed.set()

    async def until(self, done: Callable[[list[Frame]], bool], within: float = 5) -> list[Frame]:
        async with asyncio.timeout(within):
            while not done(self.frames):
                self.changed.clear()
                await self.changed.wait()
        return self.frames

    def seqs(self, room: str) -> list[int]:
        return [f["seq"] for f in self.frames if f["type"] == "message" and f["room"] == room]


class Engine:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.manager: ConnectionManager = app.state.rooms
        self.database: Database = app.state.database
        self.message_queries = 0
        self._writers: list[asyncio.Task[None]] = []
        self._connections: list[Connection] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "FROM messages" in statement:
                self.message_queries += 1

        if self.database.engine.dialect.name == "sqlite":
            # Every statement passes SQLAlchemy's cursor events on SQLite.
            event.listen(self.database.engine.sync_engine, "before_cursor_execute", count)
        else:
            # On PostgreSQL history is read straight through asyncpg (DirectRead), past
            # those events: count the engine's one way to read it instead.
            read: Callable[[RoomRef, int, int, int], Awaitable[list[tuple[int, str]]]] = (
                self.manager.history
            )

            async def counted(
                room: RoomRef, after: int, upto: int, limit: int
            ) -> list[tuple[int, str]]:
                self.message_queries += 1
                return await read(room, after, upto, limit)

            setattr(self.manager, "history", counted)  # noqa: B010 (an instance override)

    async def user(self, name: str) -> UserPublic:
        async with self.database.sessions() as session:
            user = await users_service.create_user(
                session, name=name, email=f"{name}@example.com", password_hash="x"
            )
            return UserPublic(id=user.id, name=user.name)

    async def room(self, owner: UserPublic, name: str = "general") -> RoomRef:
        async with self.database.sessions() as session:
            user = await session.get(User, owner.id)
            assert user is not None
            room = await rooms_service.create_room(
                session, owner=user, name=name, topic=None, private=False
            )
            return RoomRef(room.id, room.name)

    def connect(self, user: UserPublic) -> tuple[Connection, Recorder]:
        recorder = Recorder()
        connection = Connection(
            cast(WebSocket, None),
            recorder,
            self.manager,
            account=Account(user.id, user.name, False),
            token_expires_at=time.time() + 600,
            throttle=self.manager.throttles.acquire(user.id),
        )
        self.manager.register(connection)
        self._connections.append(connection)
        self._writers.append(asyncio.create_task(connection._write_loop()))
        return connection, recorder

    async def join(
        self, connection: Connection, recorder: Recorder, room: str, since: int | None = None
    ) -> Frame:
        await self.manager.join(connection, room, since=since, ref=None)
        frames = await recorder.until(lambda fs: any(f["type"] == "joined" for f in fs))
        return next(f for f in frames if f["type"] == "joined")

    async def close(self) -> None:
        for writer in self._writers:
            writer.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        for connection in self._connections:
            await self.manager.leave_all(connection)
            self.manager.unregister(connection)
            connection.closed.set()


MakeEngine = Callable[..., Awaitable[Engine]]


@pytest.fixture
async def make_engine(database_url: str) -> AsyncIterator[MakeEngine]:
    async with contextlib_stack() as enter:

        async def make(**overrides: Any) -> Engine:
            app = create_app(make_settings(database_url=database_url, **overrides))
            return await enter(running(app))

        yield make


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[Engine]:
    async with app.router.lifespan_context(app):
        engine = Engine(app)
        try:
            yield engine
        finally:
            await engine.close()
            await databases.empty_tables(engine.database.engine)


@asynccontextmanager
async def contextlib_stack() -> AsyncIterator[Callable[[Any], Awaitable[Engine]]]:
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        yield stack.enter_async_context


async def _send(engine: Engine, room: RoomRef, author: UserPublic, count: int) -> None:
    for index in range(count):
        await engine.manager.send_message(room, author=author, body=f"m{index}")


async def test_rejoin_within_the_ring_replays_from_memory_without_a_query(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(ws_room_buffer=50)
    ann, bob = await engine.user("ann"), await engine.user("bob")
    room = await engine.room(ann)
    first, first_frames = engine.connect(ann)
    await engine.join(first, first_frames, room.name)  # opens the room's feed here
    await _send(engine, room, ann, 20)
    await first_frames.until(lambda fs: 20 in engine_seqs(fs, room.name))
    engine.message_queries = 0
    second, second_frames = engine.connect(bob)
    joined = await engine.join(second, second_frames, room.name, since=5)
    await second_frames.until(lambda fs: 20 in engine_seqs(fs, room.name))
    assert joined["recovered"] is True
    assert joined["seq"] == 20
    assert second_frames.seqs(room.name) == list(range(6, 21))
    assert engine.message_queries == 0


async def test_rejoin_older_than_the_ring_reads_the_history(make_engine: MakeEngine) -> None:
    engine = await make_engine(ws_room_buffer=5)
    ann = await engine.user("ann")
    room = await engine.room(ann)
    first, first_frames = engine.connect(ann)
    await engine.join(first, first_frames, room.name)
    await _send(engine, room, ann, 30)
    await first_frames.until(lambda fs: 30 in engine_seqs(fs, room.name))
    engine.message_queries = 0
    second, second_frames = engine.connect(ann)
    await engine.join(second, second_frames, room.name, since=0)
    await second_frames.until(lambda fs: 30 in engine_seqs(fs, room.name))
    assert second_frames.seqs(room.name) == list(range(1, 31))
    assert engine.message_queries == 1


async def test_join_asking_more_than_the_replay_cap_replays_nothing_and_costs_no_query(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(ws_replay_max=10, ws_room_buffer=0)
    ann = await engine.user("ann")
    room = await engine.room(ann)
    await _send(engine, room, ann, 30)
    engine.message_queries = 0
    connection, frames = engine.connect(ann)
    joined = await engine.join(connection, frames, room.name, since=0)
    assert joined["recovered"] is False
    assert joined["seq"] == 30
    assert engine.message_queries == 0
    # Live traffic still flows, from right after the room's seq at join time.
    await engine.manager.send_message(room, author=ann, body="live")
    await frames.until(lambda fs: 31 in engine_seqs(fs, room.name))
    assert frames.seqs(room.name) == [31]
    # Within the cap, the same join replays (from history: the ring is off).
    again, again_frames = engine.connect(ann)
    joined = await engine.join(again, again_frames, room.name, since=21)
    await again_frames.until(lambda fs: 31 in engine_seqs(fs, room.name))
    assert joined["recovered"] is True
    assert again_frames.seqs(room.name) == list(range(22, 32))


async def test_a_gap_is_filled_with_one_history_query_for_all_members(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(ws_gap_hold_seconds=0.05)
    ann = await engine.user("ann")
    room = await engine.room(ann)
    members = [engine.connect(ann) for _ in range(20)]
    for connection, frames in members:
        await engine.join(connection, frames, room.name)
    # Another process stores 1..4 and the broker loses 1..3: only 4 arrives here.
    lost: list[Any] = []

    async def keep(_: RoomRef, messages: list[Any]) -> None:
        lost.extend(messages)

    elsewhere = MessageStore(engine.database, keep)
    for index in range(4):
        await elsewhere.store(room, author=ann, body=f"elsewhere {index}")
    engine.message_queries = 0
    last = lost[-1]
    engine.manager.feeds[room.name].on_envelope(
        Envelope(origin="another-instance", body=history.message_text(last), seq=last.seq)
    )
    for _, frames in members:
        await frames.until(lambda fs: 4 in engine_seqs(fs, room.name))
        assert frames.seqs(room.name) == [1, 2, 3, 4]
    assert engine.message_queries == 1


def engine_seqs(frames: list[Frame], room: str) -> list[int]:
    return [f["seq"] for f in frames if f["type"] == "message" and f["room"] == room]


def test_message_frame_encoding_matches_the_protocol_model() -> None:
    from datetime import UTC, datetime

    sent_at = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    fast = history.frame_text("general", 1, 2, 3, 'Ann "A" é', "hi\n\u2028", sent_at, "c-1")
    model = MessageFrame(
        room="general",
        id=1,
        seq=2,
        author=UserPublic(id=3, name='Ann "A" é'),
        body="hi\n\u2028",
        sent_at=sent_at,
        client_id="c-1",
    ).model_dump_json()
    assert fast == model
    assert (
        history.frame_text("r", 1, 1, None, None, "x", sent_at, None)
        == MessageFrame(
            room="r", id=1, seq=1, author=None, body="x", sent_at=sent_at
        ).model_dump_json()
    )


async def test_rejoin_after_the_rooms_feed_closed_opens_a_new_one(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine()
    ann = await engine.user("ann")
    room = await engine.room(ann)
    first, first_frames = engine.connect(ann)
    await engine.join(first, first_frames, room.name)
    await engine.manager.leave(first, room.name)
    old = engine.manager.feeds[room.name]
    engine.manager._linger_over(old)  # the idle feed's linger runs out now
    assert old.closed
    assert room.name not in engine.manager.feeds
    second, second_frames = engine.connect(ann)
    joined = await engine.join(second, second_frames, room.name)
    assert joined["recovered"] is True
    await engine.manager.send_message(room, author=ann, body="after")
    await second_frames.until(lambda fs: 1 in engine_seqs(fs, room.name))
    assert engine.manager.feeds[room.name] is not old


async def test_client_gone_while_written_to_is_not_a_server_failure(app: FastAPI) -> None:
    from uvicorn.protocols.utils import ClientDisconnected

    manager: ConnectionManager = app.state.rooms

    class GoneSocket:
        async def receive(self) -> dict[str, Any]:
            await asyncio.Event().wait()  # the client sends nothing
            raise AssertionError

    async def send(_: MutableMapping[str, Any]) -> None:
        raise ClientDisconnected()

    connection = Connection(
        cast(WebSocket, GoneSocket()),
        send,
        manager,
        account=Account(1, "Ann", False),
        token_expires_at=time.time() + 600,
        throttle=manager.throttles.acquire(1),
    )
    connection.send_text('{"type":"pong"}')
    # None: the client went away (no close code to send, nothing logged as a failure);
    # a server failure would be a 1011 close.
    assert await asyncio.wait_for(connection.run(), 5) is None


# -- join: room views, the joined frame ----------------------------------------------


def test_joined_frame_encoding_matches_the_protocol_model() -> None:
    frames = JoinedFrames()
    users = [(1, 'Ann "A" é'), (2, "bob\n\u2028")]
    for recovered in (True, False, True):  # the second and third reuse the listed users
        model = JoinedFrame(
            room="general",
            seq=7,
            online=[UserPublic(id=i, name=n) for i, n in users],
            online_count=3,
            recovered=recovered,
        ).model_dump_json()
        assert frames.text("general", 7, users, 3, recovered) == model
    assert frames.text('r "x"', 0, [], 0, True) == (
        JoinedFrame(
            room='r "x"', seq=0, online=[], online_count=0, recovered=True
        ).model_dump_json()
    )
    renamed = [(1, "Ann"), (2, "bob\n\u2028")]
    assert json.loads(frames.text("general", 7, renamed, 2, True))["online"][0]["name"] == "Ann"


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    read = rooms_service.joinable_room

    async def counted(database: Any, *, name: str, user_id: int) -> tuple[int, str, bool]:
        reads.append(name)
        return await read(database, name=name, user_id=user_id)

    monkeypatch.setattr(rooms_service, "joinable_room", counted)
    return reads


async def _make_private(engine: Engine, name: str, owner: UserPublic) -> None:
    async with engine.database.sessions() as session:
        room = (await session.execute(Room.__table__.select().where(Room.name == name))).first()
        assert room is not None
        orm_room = await session.get(Room, room.id)
        actor = await session.get(User, owner.id)
        assert orm_room is not None
        assert actor is not None
        await rooms_service.update_room(
            session, room=orm_room, actor=actor, topic=None, private=True, clear_topic=False
        )
    await engine.manager.room_changed(name, user_id=None, reason=LeftReason.ACCESS_REVOKED)


async def test_a_public_room_is_read_once_for_many_joins(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await make_engine()
    reads = _count_reads(monkeypatch)
    ann = await engine.user("ann")
    room = await engine.room(ann)
    for _ in range(5):
        connection, frames = engine.connect(ann)
        joined = await engine.join(connection, frames, room.name)
        assert joined["room"] == room.name
    assert reads == [room.name]


async def test_a_room_made_private_refuses_the_next_join_of_a_non_member(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await make_engine()
    reads = _count_reads(monkeypatch)
    ann, bob = await engine.user("ann"), await engine.user("bob")
    room = await engine.room(ann)
    first, first_frames = engine.connect(bob)
    await engine.join(first, first_frames, room.name)
    await _make_private(engine, room.name, ann)
    await first_frames.until(lambda fs: any(f["type"] == "left" for f in fs))
    second, second_frames = engine.connect(bob)
    await engine.manager.join(second, room.name, since=None, ref="again")
    frames = await second_frames.until(lambda fs: any(f["type"] == "error" for f in fs))
    assert [f["code"] for f in frames if f["type"] == "error"] == ["room_not_found"]
    assert room.name not in second.rooms
    assert reads == [room.name, room.name], "the second join read the room again"


async def test_a_join_under_way_when_the_room_goes_private_checks_again(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine()
    manager = engine.manager
    ann, bob = await engine.user("ann"), await engine.user("bob")
    room = await engine.room(ann)
    warm, warm_frames = engine.connect(ann)
    await engine.join(warm, warm_frames, room.name)  # the room's view is kept now
    entered, release = asyncio.Event(), asyncio.Event()
    enter = manager.presence.enter

    async def held(entry: Entry, ttl: float, *, limit: int) -> Entered:
        result = await enter(entry, ttl, limit=limit)
        if entry.user_id == bob.id:
            entered.set()
            await release.wait()
        return result

    manager.presence.enter = held  # type: ignore[method-assign]
    connection, frames = engine.connect(bob)
    joining = asyncio.create_task(manager.join(connection, room.name, since=None, ref="j"))
    await entered.wait()
    await _make_private(engine, room.name, ann)
    release.set()
    await joining
    seen = await frames.until(lambda fs: any(f["type"] == "error" for f in fs))
    assert [f["code"] for f in seen if f["type"] == "error"] == ["room_not_found"]
    assert not any(f["type"] == "joined" for f in seen)
    assert room.name not in connection.rooms
    online = await manager.online(room.name)
    assert bob.id not in [user_id for user_id, _ in online.users]
