from __future__ import annotations

import asyncio

from fastapi import FastAPI
from sqlalchemy import func, select

from townsquare.platform.database import Database
from townsquare.rooms import service as rooms_service
from townsquare.rooms.models import Message, Room
from townsquare.users import service as users_service
from townsquare.users.schemas import UserPublic

SENDERS = 50
PER_SENDER = 40


async def _room_and_author(database: Database) -> tuple[Room, UserPublic]:
    async with database.sessions() as session:
        user = await users_service.create_user(
            session, name="Writer", email="writer@example.com", password_hash="x"
        )
        room = await rooms_service.create_room(
            session, owner=user, name="busy", topic=None, private=False
        )
        return room, UserPublic(id=user.id, name=user.name)


async def test_concurrent_senders_get_seq_without_gap_or_duplicate(app: FastAPI) -> None:
    database: Database = app.state.database
    room, author = await _room_and_author(database)

    async def sender(index: int) -> list[int]:
        seqs = []
        for number in range(PER_SENDER):
            async with database.sessions() as session:
                message, created = await rooms_service.post_message(
                    session, room=room, author=author, body=f"{index}-{number}"
                )
            assert created
            seqs.append(message.seq)
        return seqs

    results = await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    every = sorted(seq for seqs in results for seq in seqs)
    assert every == list(range(1, SENDERS * PER_SENDER + 1))
    # Each sender saw its own messages in increasing order.
    assert all(seqs == sorted(seqs) for seqs in results)
    async with database.sessions() as session:
        stored = (
            await session.execute(select(Message.seq).where(Message.room_id == room.id))
        ).scalars()
        assert sorted(stored) == every
        assert await rooms_service.last_seq(session, room_id=room.id) == SENDERS * PER_SENDER


async def test_same_client_id_sent_concurrently_is_stored_once(app: FastAPI) -> None:
    database: Database = app.state.database
    room, author = await _room_and_author(database)

    async def send() -> tuple[int, bool]:
        async with database.sessions() as session:
            message, created = await rooms_service.post_message(
                session, room=room, author=author, body="once", client_id="c-1"
            )
        return message.id, created

    results = await asyncio.gather(*(send() for _ in range(10)))
    assert len({message_id for message_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    async with database.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Message))
        assert count == 1
        assert await rooms_service.last_seq(session, room_id=room.id) == 1
