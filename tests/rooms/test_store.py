"""Group commit: batches, gap-free seq, dedupe folded in, permission checked at commit."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from townsquare.platform.database import Database, create_database
from townsquare.rooms import service as rooms_service
from townsquare.rooms.exceptions import IdempotencyKeyReused, RoomNotFound
from townsquare.rooms.manager import ConnectionManager
from townsquare.rooms.models import Message, Room
from townsquare.rooms.schemas import MessageRead
from townsquare.rooms.store import MessageStore, RoomRef
from townsquare.users import service as users_service
from townsquare.users.models import User
from townsquare.users.schemas import UserPublic

SENDERS = 50
PER_SENDER = 20


async def _user(database: Database, name: str) -> UserPublic:
    async with database.sessions() as session:
        user = await users_service.create_user(
            session, name=name, email=f"{name.lower()}@example.com", password_hash="x"
        )
        return UserPublic(id=user.id, name=user.name)


async def _room(database: Database, owner: UserPublic, *, private: bool = False) -> RoomRef:
    async with database.sessions() as session:
        user = await session.get(User, owner.id)
        assert user is not None
        room = await rooms_service.create_room(
            session, owner=user, name="busy", topic=None, private=private
        )
        return RoomRef(room.id, room.name)


async def _stored(database: Database, room: RoomRef) -> list[int]:
    async with database.sessions() as session:
        rows = await session.execute(
            select(Message.seq).where(Message.room_id == room.id).order_by(Message.seq)
        )
        return list(rows.scalars())


async def test_concurrent_senders_share_batches_and_get_seq_without_gap_or_duplicate(
    app: FastAPI,
) -> None:
    database: Database = app.state.database
    manager: ConnectionManager = app.state.rooms
    author = await _user(database, "Writer")
    room = await _room(database, author)
    batches_before = manager.store.batches

    async def sender(index: int) -> list[int]:
        seqs = []
        for number in range(PER_SENDER):
            message, created = await manager.send_message(
                room, author=author, body=f"{index}-{number}"
            )
            assert created
            seqs.append(message.seq)
        return seqs

    results = await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    every = sorted(seq for seqs in results for seq in seqs)
    assert every == list(range(1, SENDERS * PER_SENDER + 1))
    # Each sender saw its own messages in increasing order.
    assert all(seqs == sorted(seqs) for seqs in results)
    assert await _stored(database, room) == every
    # Senders waiting together were stored together: far fewer transactions than
    # messages (each round of 50 concurrent sends is one batch).
    assert manager.store.batches - batches_before <= PER_SENDER * 2
    async with database.sessions() as session:
        assert await rooms_service.last_seq(session, room_id=room.id) == SENDERS * PER_SENDER


async def test_same_client_id_sent_concurrently_is_stored_once(app: FastAPI) -> None:
    database: Database = app.state.database
    manager: ConnectionManager = app.state.rooms
    author = await _user(database, "Ann")
    room = await _room(database, author)
    results = await asyncio.gather(
        *(
            manager.send_message(room, author=author, body="once", client_id="c-1")
            for _ in range(10)
        )
    )
    assert len({message.id for message, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    # A retry in a later batch finds it too.
    again, created = await manager.send_message(room, author=author, body="once", client_id="c-1")
    assert not created
    assert again.id == results[0][0].id
    assert await _stored(database, room) == [1]


async def test_same_idempotency_key_returns_the_first_result_and_refuses_another_body(
    app: FastAPI,
) -> None:
    database: Database = app.state.database
    manager: ConnectionManager = app.state.rooms
    author = await _user(database, "Ann")
    room = await _room(database, author)
    same = [
        manager.send_message(room, author=author, body="pay", idempotency_key="k1")
        for _ in range(5)
    ]
    other = manager.send_message(room, author=author, body="steal", idempotency_key="k1")
    results = await asyncio.gather(*same, other, return_exceptions=True)
    stored = [r for r in results[:5] if not isinstance(r, BaseException)]
    assert len(stored) == 5
    assert len({message.id for message, _ in stored}) == 1
    assert isinstance(results[5], IdempotencyKeyReused)
    with pytest.raises(IdempotencyKeyReused):
        await manager.send_message(room, author=author, body="later", idempotency_key="k1")
    assert await _stored(database, room) == [1]


async def test_author_without_access_is_refused_at_commit_and_takes_no_seq(app: FastAPI) -> None:
    database: Database = app.state.database
    manager: ConnectionManager = app.state.rooms
    owner = await _user(database, "Owner")
    outsider = await _user(database, "Outsider")
    disabled = await _user(database, "Gone")
    async with database.sessions() as session:
        await session.execute(update(User).where(User.id == disabled.id).values(is_active=False))
        await session.commit()
    room = await _room(database, owner, private=True)
    results = await asyncio.gather(
        manager.send_message(room, author=owner, body="first"),
        manager.send_message(room, author=outsider, body="intruder"),
        manager.send_message(room, author=disabled, body="ghost"),
        manager.send_message(room, author=owner, body="second"),
        return_exceptions=True,
    )
    assert isinstance(results[1], RoomNotFound)
    assert isinstance(results[2], RoomNotFound)
    first, second = results[0], results[3]
    assert isinstance(first, tuple)
    assert isinstance(second, tuple)
    assert (first[0].seq, second[0].seq) == (1, 2)
    assert await _stored(database, room) == [1, 2]


async def test_send_to_a_deleted_room_is_refused(app: FastAPI) -> None:
    database: Database = app.state.database
    manager: ConnectionManager = app.state.rooms
    owner = await _user(database, "Owner")
    room = await _room(database, owner)
    async with database.sessions() as session:
        stored = await session.get(Room, room.id)
        user = await session.get(User, owner.id)
        assert stored is not None
        assert user is not None
        await rooms_service.delete_room(session, room=stored, actor=user)
    with pytest.raises(RoomNotFound):
        await manager.send_message(room, author=owner, body="too late")


async def test_two_stores_on_two_engines_into_one_room_keep_seq_gap_free(
    app: FastAPI, database_url: str
) -> None:
    """Two processes' stores (two engines, two group commits) writing into one room."""
    database: Database = app.state.database
    author = await _user(database, "Ann")
    room = await _room(database, author)
    other = create_database(database_url, pool_size=2, max_overflow=0)
    published: list[list[MessageRead]] = [[], []]

    def publisher(index: int):  # type: ignore[no-untyped-def]
        async def publish(_: RoomRef, messages: list[MessageRead]) -> None:
            published[index].extend(messages)

        return publish

    stores = [MessageStore(database, publisher(0)), MessageStore(other, publisher(1))]
    try:

        async def sender(store: MessageStore, index: int) -> None:
            for number in range(10):
                await store.store(room, author=author, body=f"{index}-{number}")

        await asyncio.gather(*(sender(stores[i % 2], i) for i in range(20)))
    finally:
        await other.dispose()
    assert await _stored(database, room) == list(range(1, 201))
    # Each store published its own messages once, in seq order.
    for messages in published:
        seqs = [message.seq for message in messages]
        assert seqs == sorted(seqs)
    assert sorted(m.seq for batch in published for m in batch) == list(range(1, 201))
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 200


async def test_unverified_author_is_refused_at_commit_when_verification_is_required(
    app: FastAPI,
) -> None:
    from townsquare.auth.exceptions import EmailNotVerified
    from townsquare.platform.database import utcnow

    database: Database = app.state.database
    verified = await _user(database, "Verified")
    unverified = await _user(database, "Unverified")  # e.g. changed email since joining
    async with database.sessions() as session:
        await session.execute(
            update(User).where(User.id == verified.id).values(email_verified_at=utcnow())
        )
        await session.commit()
    room = await _room(database, verified)

    async def publish(_: RoomRef, __: list[MessageRead]) -> None:
        return None

    store = MessageStore(database, publish, require_verified_email=True)
    results = await asyncio.gather(
        store.store(room, author=verified, body="first"),
        store.store(room, author=unverified, body="not yet"),
        store.store(room, author=verified, body="second"),
        return_exceptions=True,
    )
    assert isinstance(results[1], EmailNotVerified)
    first, second = results[0], results[2]
    assert isinstance(first, tuple)
    assert isinstance(second, tuple)
    assert (first[0].seq, second[0].seq) == (1, 2)
    assert await _stored(database, room) == [1, 2]
