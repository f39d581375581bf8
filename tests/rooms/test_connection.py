"""The writer's ordering rules, driven directly: dedupe, gap filling, join replay."""

from __future__ import annotations

import json
import time
from typing import Any, cast

from fastapi import FastAPI
from starlette.websockets import WebSocket

from townsquare.platform.database import Database
from townsquare.rooms import service as rooms_service
from townsquare.rooms.connection import Connection, Replay, RoomState
from townsquare.rooms.manager import ConnectionManager, RoomEvent, message_frame
from townsquare.rooms.models import Room
from townsquare.rooms.schemas import MessageRead
from townsquare.users import service as users_service
from townsquare.users.schemas import UserPublic


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))


async def _setup(
    app: FastAPI, count: int
) -> tuple[Connection, RecordingSocket, Room, list[MessageRead]]:
    database: Database = app.state.database
    async with database.sessions() as session:
        user = await users_service.create_user(
            session, name="Ann", email="ann@example.com", password_hash="x"
        )
        room = await rooms_service.create_room(
            session, owner=user, name="general", topic=None, private=False
        )
    author = UserPublic(id=user.id, name=user.name)
    stored = []
    for index in range(count):
        async with database.sessions() as session:
            message, _ = await rooms_service.post_message(
                session, room=room, author=author, body=f"m{index + 1}"
            )
            stored.append(message)
    socket = RecordingSocket()
    manager: ConnectionManager = app.state.rooms
    connection = Connection(
        cast(WebSocket, socket), manager, user=user, token_expires_at=time.time() + 60
    )
    return connection, socket, room, stored


def _event(message: MessageRead) -> RoomEvent:
    return RoomEvent(message.room, message.seq, message_frame(message).model_dump_json())


async def test_live_message_ahead_of_last_seq_fills_the_gap_from_history(app: FastAPI) -> None:
    connection, socket, room, stored = await _setup(app, 5)
    connection.rooms["general"] = RoomState(room=room, last_seq=1, syncing=False)
    # Message 5's publish overtook 2, 3 and 4 (two senders, or two processes).
    await connection._deliver(_event(stored[4]))
    assert [frame["seq"] for frame in socket.sent] == [2, 3, 4, 5]
    for late in stored[1:4]:
        await connection._deliver(_event(late))
    assert [frame["seq"] for frame in socket.sent] == [2, 3, 4, 5]


async def test_replay_then_held_back_live_messages_without_duplicates(app: FastAPI) -> None:
    connection, socket, room, stored = await _setup(app, 6)
    state = RoomState(room=room)
    connection.rooms["general"] = state
    # Live messages arrive while the join is syncing: held back, then filtered.
    await connection._deliver(_event(stored[5]))
    await connection._deliver(_event(stored[3]))
    presence = RoomEvent("general", None, '{"type":"presence"}')
    await connection._deliver(presence)
    assert socket.sent == []
    await connection._replay(Replay(state, since=2, current=4))
    kinds = [(frame["type"], frame.get("seq")) for frame in socket.sent]
    assert kinds == [
        ("joined", 4),
        ("message", 3),
        ("message", 4),
        ("message", 5),
        ("message", 6),
        ("presence", None),
    ]


async def test_join_without_since_starts_after_the_current_seq(app: FastAPI) -> None:
    connection, socket, room, stored = await _setup(app, 3)
    state = RoomState(room=room)
    connection.rooms["general"] = state
    await connection._replay(Replay(state, since=None, current=3))
    await connection._deliver(_event(stored[2]))
    assert [frame["type"] for frame in socket.sent] == ["joined"]


async def test_messages_for_a_room_left_are_dropped(app: FastAPI) -> None:
    connection, socket, _, stored = await _setup(app, 1)
    await connection._deliver(_event(stored[0]))
    assert socket.sent == []
