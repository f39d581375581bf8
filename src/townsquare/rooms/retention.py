"""The message table's purge: idempotency keys past their window, and (when
MESSAGE_RETENTION_DAYS is set) messages past their retention. Run by the periodic
purge job, in batches, so no transaction holds many rows at once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.platform.database import utcnow
from townsquare.rooms.models import Message

BATCH = 1000


async def forget_idempotency_keys(session: AsyncSession, *, older_than: timedelta) -> int:
    """Set `idempotency_key` to NULL on messages stored more than `older_than` ago: a
    retry after that is a new message (as with Stripe's 24 hours)."""
    cutoff = utcnow() - older_than
    total = 0
    while True:
        batch = (
            select(Message.id)
            .where(Message.idempotency_key.is_not(None), Message.created_at < cutoff)
            .limit(BATCH)
            .scalar_subquery()
        )
        result = await session.execute(
            update(Message)
            .where(Message.id.in_(batch))
            .values(idempotency_key=None)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        count: int = result.rowcount  # type: ignore[attr-defined]
        total += count
        if count < BATCH:
            return total


async def delete_old_messages(session: AsyncSession, *, older_than: timedelta) -> int:
    """Delete messages stored more than `older_than` ago. Rooms keep their `seq`
    counter, so later messages continue the numbering; history starts later."""
    cutoff = utcnow() - older_than
    total = 0
    while True:
        batch = select(Message.id).where(Message.created_at < cutoff).limit(BATCH).scalar_subquery()
        result = await session.execute(
            delete(Message)
            .where(Message.id.in_(batch))
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        count: int = result.rowcount  # type: ignore[attr-defined]
        total += count
        if count < BATCH:
            return total
