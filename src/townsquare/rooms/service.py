"""Rooms, membership, who may be in a room, and history. Messages are stored by
`store.py` (group commit), through the room engine (`ConnectionManager.send_message`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, bindparam, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.auth.principals import Actor
from townsquare.platform.database import Database, DirectRead, utcnow
from townsquare.rooms.account import Account
from townsquare.rooms.exceptions import (
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
    session: AsyncSession, *, owner: Actor, name: str, topic: str | None, private: bool
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


async def get_visible_room(session: AsyncSession, *, name: str, viewer: Actor) -> Room:
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
    session: AsyncSession, *, viewer: Actor, skip: int, limit: int
) -> Sequence[Room]:
    query = select(Room).order_by(Room.id).offset(skip).limit(limit)
    if not viewer.is_admin:
        member_of = select(RoomMember.room_id).where(RoomMember.user_id == viewer.id)
        query = query.where(or_(Room.is_private.is_(False), Room.id.in_(member_of)))
    return (await session.execute(query)).scalars().all()


def _ensure_manager(room: Room, actor: Actor) -> None:
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


async def add_member(
    session: AsyncSession, *, room: Room, actor: Actor, user_id: int
) -> MemberRead:
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


async def remove_member(session: AsyncSession, *, room: Room, actor: Actor, user_id: int) -> None:
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


async def last_seq(session: AsyncSession, *, room_id: int) -> int:
    result = await session.execute(select(Room.last_seq).where(Room.id == room_id))
    return result.scalar_one_or_none() or 0


_MEMBER = (
    select(RoomMember.user_id)
    .where(RoomMember.room_id == Room.id, RoomMember.user_id == bindparam("user_id"))
    .exists()
)
# Who may join: read fresh in one round trip (an admin demoted a second ago is not
# one here), for the WebSocket `join`.
_JOIN_ACCESS = DirectRead(
    select(
        Room.id,
        Room.name,
        Room.is_private,
        User.is_active,
        User.is_admin,
        _MEMBER.label("is_member"),
    )
    .select_from(Room)
    .join(User, User.id == bindparam("user_id"))
    .where(Room.name == bindparam("name"))
)


async def joinable_room(database: Database, *, name: str, user_id: int) -> tuple[int, str, bool]:
    """The id, name and privacy of the room `user_id` may join now; `RoomNotFound`
    otherwise (also for a disabled account, and a private room it may not see)."""
    row = await _JOIN_ACCESS.fetch(database, name=name, user_id=user_id)
    if row is None or not row["is_active"]:
        raise RoomNotFound()
    if row["is_private"] and not (row["is_admin"] or row["is_member"]):
        raise RoomNotFound()
    return int(row["id"]), str(row["name"]), bool(row["is_private"])


async def users_with_access(session: AsyncSession, *, room_id: int, user_ids: set[int]) -> set[int]:
    """Those of `user_ids` who may be in the room now: active, and the room public, or
    a member, or an admin. Empty when the room is gone."""
    if not user_ids:
        return set()
    private = (
        await session.execute(select(Room.is_private).where(Room.id == room_id))
    ).scalar_one_or_none()
    if private is None:
        return set()
    rows = await session.execute(
        select(User.id, User.is_admin).where(User.id.in_(user_ids), User.is_active.is_(True))
    )
    active = {row.id: row.is_admin for row in rows}
    if not private:
        return set(active)
    members = set(
        (
            await session.execute(
                select(RoomMember.user_id).where(
                    RoomMember.room_id == room_id, RoomMember.user_id.in_(active)
                )
            )
        ).scalars()
    )
    return {user_id for user_id, is_admin in active.items() if is_admin or user_id in members}


async def account_of(session: AsyncSession, user_id: int) -> Account | None:
    """The connection's view of an active account, read fresh; None if gone or disabled."""
    row = (
        await session.execute(
            select(User.id, User.name, User.is_admin).where(
                User.id == user_id, User.is_active.is_(True)
            )
        )
    ).first()
    return None if row is None else Account(row.id, row.name, row.is_admin)


async def update_room(
    session: AsyncSession,
    *,
    room: Room,
    actor: Actor,
    topic: str | None,
    private: bool | None,
    clear_topic: bool,
) -> Room:
    _ensure_manager(room, actor)
    if clear_topic or topic is not None:
        room.topic = topic
    if private is not None:
        room.is_private = private
    await session.commit()
    return room


async def delete_room(session: AsyncSession, *, room: Room, actor: Actor) -> None:
    """Delete the room, its members and its history."""
    _ensure_manager(room, actor)
    await session.execute(delete(Message).where(Message.room_id == room.id))
    await session.execute(delete(RoomMember).where(RoomMember.room_id == room.id))
    await session.execute(delete(Room).where(Room.id == room.id))
    await session.commit()
