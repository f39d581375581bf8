"""API keys: service tokens that let another backend post into chosen rooms.

A key posts as its own service account (a `users` row of kind SERVICE named like the
key, with no usable password), so its messages have an ordinary author and the
message path treats it like any author. The secret is 256 random bits shown once;
only its SHA-256 is stored, so a lookup is one index hit and a deleted key stops
working on the next request.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.api_keys.exceptions import ApiKeyNotFound, RoomsNotFound
from townsquare.api_keys.models import ApiKey, ApiKeyRoom
from townsquare.api_keys.schemas import ApiKeyCreated, ApiKeyRead
from townsquare.auth.exceptions import InvalidToken
from townsquare.auth.tokens import API_KEY_PREFIX, hash_refresh_token
from townsquare.platform.database import utcnow
from townsquare.rooms.exceptions import RoomNotFound
from townsquare.rooms.models import Room, RoomMember
from townsquare.rooms.service import MEMBER
from townsquare.users.models import SERVICE, User

# A password hash no password matches (argon2 refuses it as malformed).
UNUSABLE_PASSWORD = "!"  # noqa: S105
# `last_used_at` is written at most this often per key, not on every post.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_KEY_LENGTH = 128


def hash_key(key: str) -> str:
    return hash_refresh_token(key)


async def _rooms_by_name(session: AsyncSession, names: Sequence[str]) -> list[Room]:
    rooms = (await session.execute(select(Room).where(Room.name.in_(names)))).scalars().all()
    missing = set(names) - {room.name for room in rooms}
    if missing:
        raise RoomsNotFound(f"Room not found: {', '.join(sorted(missing))}")
    return sorted(rooms, key=lambda room: names.index(room.name))


async def _room_names(session: AsyncSession, key_ids: Sequence[int]) -> dict[int, list[str]]:
    rows = await session.execute(
        select(ApiKeyRoom.api_key_id, Room.name)
        .join(Room, Room.id == ApiKeyRoom.room_id)
        .where(ApiKeyRoom.api_key_id.in_(key_ids))
        .order_by(Room.name)
    )
    names: dict[int, list[str]] = {key_id: [] for key_id in key_ids}
    for key_id, name in rows:
        names[key_id].append(name)
    return names


def _read(key: ApiKey, rooms: list[str]) -> ApiKeyRead:
    return ApiKeyRead(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        author_id=key.service_user_id,
        rooms=rooms,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
    )


async def create_key(
    session: AsyncSession, *, name: str, room_names: Sequence[str], creator_id: int
) -> ApiKeyCreated:
    rooms = await _rooms_by_name(session, room_names)
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    author = User(
        name=name,
        email=f"api-key-{uuid.uuid4().hex}@keys.townsquare.example",
        password_hash=UNUSABLE_PASSWORD,
        kind=SERVICE,
        email_verified_at=now,
    )
    session.add(author)
    await session.flush()
    key = ApiKey(
        name=name,
        prefix=secret[: len(API_KEY_PREFIX) + 6],
        key_hash=hash_key(secret),
        service_user_id=author.id,
        created_by=creator_id,
        created_at=now,
    )
    session.add(key)
    await session.flush()
    session.add_all(ApiKeyRoom(api_key_id=key.id, room_id=room.id) for room in rooms)
    # Its account is a member of its rooms: the store checks a private room's
    # membership when it stores, and the room's members list shows who posts there.
    session.add_all(
        RoomMember(room_id=room.id, user_id=author.id, role=MEMBER, added_at=now) for room in rooms
    )
    await session.commit()
    return ApiKeyCreated(**_read(key, sorted(r.name for r in rooms)).model_dump(), key=secret)


async def list_keys(session: AsyncSession, *, skip: int, limit: int) -> list[ApiKeyRead]:
    query = select(ApiKey).order_by(ApiKey.id).offset(skip).limit(limit)
    keys = (await session.execute(query)).scalars().all()
    names = await _room_names(session, [key.id for key in keys])
    return [_read(key, names[key.id]) for key in keys]


async def delete_key(session: AsyncSession, *, key_id: int) -> None:
    """Revoke a key: it stops working at once. Its service account stays (disabled), so
    the messages it posted keep their author."""
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise ApiKeyNotFound()
    await session.execute(
        update(User).where(User.id == key.service_user_id).values(is_active=False)
    )
    await session.execute(delete(ApiKey).where(ApiKey.id == key_id))
    await session.commit()


async def authenticate(session: AsyncSession, *, key: str) -> tuple[ApiKey, User]:
    """The key and the account it posts as; `InvalidToken` for an unknown (or revoked)
    key."""
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidToken()
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.service_user_id)
            .where(ApiKey.key_hash == hash_key(key))
        )
    ).first()
    if row is None:
        raise InvalidToken("Invalid or revoked API key")
    api_key, author = row
    now = utcnow()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        api_key.last_used_at = now
        await session.commit()
    return api_key, author


async def room_of_key(session: AsyncSession, *, key: ApiKey, name: str) -> Room:
    """The room named `name` if `key` may post into it; `RoomNotFound` otherwise (a key
    learns nothing of rooms outside its list)."""
    room = (
        await session.execute(
            select(Room)
            .join(ApiKeyRoom, ApiKeyRoom.room_id == Room.id)
            .where(ApiKeyRoom.api_key_id == key.id, Room.name == name)
        )
    ).scalar_one_or_none()
    if room is None:
        raise RoomNotFound()
    return room
