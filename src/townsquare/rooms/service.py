"""Rooms, membership and messages. Every message gets its per-room `seq` here."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.platform.database import utcnow
from townsquare.rooms.exceptions import (
    IdempotencyKeyReused,
    MemberNotFound,
    NotRoomManager,
    OwnerCannotBeRemoved,
    RoomNameTaken,
    RoomNotFound,
)
from townsquare.rooms.models import Message, Room, RoomMember
from townsquare.rooms.schemas import MemberRead, MessageRead
from townsquare.users import service as users_service
from townsquare.users.models import User
from townsquare.users.schemas import UserPublic

OWNER = "owner"
MEMBER = "member"


async def create_room(
    session: AsyncSession, *, owner: User, name: str, topic: str | None, private: bool
) -> Room:
    if await _room_by_name(session, name) is not None:
        raise RoomNameTaken()
    room = Room(name=name, topic=topic, is_private=private, owner_id=owner.id, last_seq=0)
    session.add(room)
    try:
        await session.flush()
        session.add(RoomMember(room_id=room.id, user_id=owner.id, role=OWNER))
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise RoomNameTaken() from exc
    return room


async def _room_by_name(session: AsyncSession, name: str) -> Room | None:
    result = await session.execute(select(Room).where(Room.name == name))
    return result.scalar_one_or_none()


async def is_member(session: AsyncSession, *, room_id: int, user_id: int) -> bool:
    found = await session.execute(
        select(RoomMember.user_id).where(
            RoomMember.room_id == room_id, RoomMember.user_id == user_id
        )
    )
    return found.first() is not None


async def get_visible_room(session: AsyncSession, *, name: str, viewer: User) -> Room:
    """The room, if `viewer` may see it: public rooms to anyone signed in, private
    rooms to their members and admins. Anything else is `RoomNotFound`."""
    room = await _room_by_name(session, name)
    if room is None:
        raise RoomNotFound()
    hidden = room.is_private and not viewer.is_admin
    if hidden and not await is_member(session, room_id=room.id, user_id=viewer.id):
        raise RoomNotFound()
    return room


async def list_rooms(
    session: AsyncSession, *, viewer: User, skip: int, limit: int
) -> Sequence[Room]:
    query = select(Room).order_by(Room.id).offset(skip).limit(limit)
    if not viewer.is_admin:
        member_of = select(RoomMember.room_id).where(RoomMember.user_id == viewer.id)
        query = query.where(or_(Room.is_private.is_(False), Room.id.in_(member_of)))
    return (await session.execute(query)).scalars().all()


def _ensure_manager(room: Room, actor: User) -> None:
    if not (actor.is_admin or room.owner_id == actor.id):
        raise NotRoomManager()


async def list_members(session: AsyncSession, *, room: Room) -> list[MemberRead]:
    rows = await session.execute(
        select(RoomMember, User)
        .join(User, User.id == RoomMember.user_id)
        .where(RoomMember.room_id == room.id)
        .order_by(RoomMember.added_at, RoomMember.user_id)
    )
    return [_member_read(member, user) for member, user in rows]


def _member_read(member: RoomMember, user: User) -> MemberRead:
    return MemberRead(
        user=UserPublic(id=user.id, name=user.name), role=member.role, added_at=member.added_at
    )


async def add_member(session: AsyncSession, *, room: Room, actor: User, user_id: int) -> MemberRead:
    """Owner and admins add anyone; anyone may add themself to a public room."""
    if not (user_id == actor.id and not room.is_private):
        _ensure_manager(room, actor)
    user = await users_service.get_user(session, user_id)
    # Plain values: a rollback below expires the ORM objects.
    room_id, public = room.id, UserPublic(id=user.id, name=user.name)
    member = await session.get(RoomMember, (room_id, user_id))
    if member is None:
        member = RoomMember(room_id=room_id, user_id=user_id, role=MEMBER, added_at=utcnow())
        session.add(member)
        try:
            await session.commit()
        except IntegrityError:
            # Added twice at once: the other request did it, which is the same result.
            await session.rollback()
            member = await session.get(RoomMember, (room_id, user_id))
            if member is None:
                raise
    return MemberRead(user=public, role=member.role, added_at=member.added_at)


async def remove_member(session: AsyncSession, *, room: Room, actor: User, user_id: int) -> None:
    """Owner and admins remove anyone but the owner; members may remove themselves."""
    if user_id != actor.id:
        _ensure_manager(room, actor)
    if user_id == room.owner_id:
        raise OwnerCannotBeRemoved()
    removed = await session.execute(
        delete(RoomMember).where(RoomMember.room_id == room.id, RoomMember.user_id == user_id)
    )
    await session.commit()
    if removed.rowcount == 0:  # type: ignore[attr-defined]
        raise MemberNotFound()


def _messages(room: Room) -> Select[Message, int, str]:
    return (
        select(Message, User.id, User.name)
        .outerjoin(User, User.id == Message.author_id)
        .where(Message.room_id == room.id)
    )


def _message_read(
    message: Message, room_name: str, author_id: int | None, author_name: str | None
) -> MessageRead:
    author = None
    if author_id is not None and author_name is not None:
        author = UserPublic(id=author_id, name=author_name)
    return MessageRead(
        id=message.id,
        room=room_name,
        seq=message.seq,
        author=author,
        body=message.body,
        sent_at=message.created_at,
        client_id=message.client_id,
    )


async def list_messages(
    session: AsyncSession,
    *,
    room: Room,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> list[MessageRead]:
    """History, oldest first: the first `limit` after `after_seq` when it is given,
    else the latest `limit` (before `before_seq`, when given)."""
    query = _messages(room)
    if after_seq is not None:
        query = query.where(Message.seq > after_seq)
    if before_seq is not None:
        query = query.where(Message.seq < before_seq)
    if after_seq is not None:
        rows = list((await session.execute(query.order_by(Message.seq).limit(limit))).all())
    else:
        newest = query.order_by(Message.seq.desc()).limit(limit)
        rows = list(reversed((await session.execute(newest)).all()))
    return [_message_read(message, room.name, uid, uname) for message, uid, uname in rows]


async def _existing_message(
    session: AsyncSession,
    *,
    room: Room,
    author_id: int,
    client_id: str | None,
    idempotency_key: str | None,
) -> MessageRead | None:
    if client_id is None and idempotency_key is None:
        return None
    query = _messages(room).where(Message.author_id == author_id)
    if client_id is not None:
        query = query.where(Message.client_id == client_id)
    else:
        query = query.where(Message.idempotency_key == idempotency_key)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    return _message_read(row[0], room.name, row[1], row[2])


async def post_message(
    session: AsyncSession,
    *,
    room: Room,
    author: UserPublic,
    body: str,
    client_id: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[MessageRead, bool]:
    """Store a message with the room's next `seq`. Returns it and whether it is new:
    a repeated `client_id` or `Idempotency-Key` gives back the message stored first."""

    async def stored_before() -> MessageRead | None:
        return await _existing_message(
            session,
            room=room,
            author_id=author.id,
            client_id=client_id,
            idempotency_key=idempotency_key,
        )

    existing = await stored_before()
    if existing is None:
        try:
            return await _insert_message(
                session,
                room=room,
                author=author,
                body=body,
                client_id=client_id,
                idempotency_key=idempotency_key,
            ), True
        except IntegrityError:
            # The same client_id or key raced in on another connection and won.
            await session.rollback()
            existing = await stored_before()
            if existing is None:
                raise
    if idempotency_key is not None and existing.body != body:
        raise IdempotencyKeyReused()
    return existing, False


async def _insert_message(
    session: AsyncSession,
    *,
    room: Room,
    author: UserPublic,
    body: str,
    client_id: str | None,
    idempotency_key: str | None,
) -> MessageRead:
    # The write path: one transaction that bumps the room's counter and inserts the
    # message. The UPDATE takes the lock of this room's row only (PostgreSQL) and
    # RETURNING hands back the new value, so two senders can never get one number;
    # a failed insert rolls the counter back with it, so there is no gap either.
    seq = (
        await session.execute(
            update(Room)
            .where(Room.id == room.id)
            .values(last_seq=Room.last_seq + 1)
            .returning(Room.last_seq)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    message = Message(
        room_id=room.id,
        seq=seq,
        author_id=author.id,
        body=body,
        client_id=client_id,
        idempotency_key=idempotency_key,
        created_at=utcnow(),
    )
    session.add(message)
    await session.commit()
    return _message_read(message, room.name, author.id, author.name)


async def last_seq(session: AsyncSession, *, room_id: int) -> int:
    result = await session.execute(select(Room.last_seq).where(Room.id == room_id))
    return result.scalar_one_or_none() or 0
