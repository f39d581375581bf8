"""Read-only figures for the admin page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.rooms.models import Room
from townsquare.users.models import User


@dataclass(frozen=True, slots=True)
class StoredCounts:
    users: int
    rooms: int
    messages: int


async def stored_counts(session: AsyncSession) -> StoredCounts:
    """Accounts, rooms and messages in the database, in two aggregate queries (the
    message count is the sum of the rooms' sequence counters, not a scan of messages)."""
    users = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    rooms, messages = (
        await session.execute(select(func.count(), func.coalesce(func.sum(Room.last_seq), 0)))
    ).one()
    return StoredCounts(users=int(users), rooms=int(rooms), messages=int(messages))
