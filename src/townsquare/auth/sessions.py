"""Logins as the account's owner sees them: GET /auth/sessions, DELETE /auth/sessions/{id}.

A session is one login: its id is the family id of its refresh tokens (and the `sid`
of its access tokens). Whether it is open is decided by its refresh tokens (an
unrevoked one left); the `user_sessions` row holds what the owner wants to see: when
it started and was last used (login or refresh), from which client, until when.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.auth.client import ClientInfo
from townsquare.auth.exceptions import SessionNotFound
from townsquare.auth.models import RefreshToken, UserSession
from townsquare.platform.database import utcnow

# A user with more open logins than this sees the most recently used ones.
MAX_LISTED = 100


async def record_use(
    session: AsyncSession,
    *,
    user_id: int,
    session_id: str,
    now: datetime,
    expires_at: datetime,
    client: ClientInfo | None,
) -> None:
    """A login or refresh of `session_id` (within the caller's transaction)."""
    row = await session.get(UserSession, session_id)
    if row is None:
        # New login, or a login made before sessions were recorded.
        session.add(
            UserSession(
                id=session_id,
                user_id=user_id,
                created_at=now,
                last_used_at=now,
                expires_at=expires_at,
                user_agent=client.user_agent if client else None,
                client_ip=client.ip if client else None,
            )
        )
        return
    row.last_used_at = now
    row.expires_at = expires_at
    if client is not None:
        row.user_agent = client.user_agent
        row.client_ip = client.ip


async def mark_ended(
    session: AsyncSession,
    *,
    now: datetime,
    session_id: str | None = None,
    user_id: int | None = None,
) -> None:
    """Record that login `session_id`, or every login of `user_id`, ended; the caller
    revokes the refresh tokens in the same transaction."""
    assert session_id is not None or user_id is not None
    statement = update(UserSession).where(UserSession.ended_at.is_(None))
    if session_id is not None:
        statement = statement.where(UserSession.id == session_id)
    if user_id is not None:
        statement = statement.where(UserSession.user_id == user_id)
    await session.execute(
        statement.values(ended_at=now).execution_options(synchronize_session=False)
    )


async def list_open(session: AsyncSession, *, user_id: int) -> Sequence[UserSession]:
    now = utcnow()
    query = (
        select(UserSession)
        .where(
            UserSession.user_id == user_id,
            UserSession.ended_at.is_(None),
            UserSession.expires_at > now,
        )
        .order_by(UserSession.last_used_at.desc(), UserSession.id)
        .limit(MAX_LISTED)
    )
    return (await session.execute(query)).scalars().all()


async def end(session: AsyncSession, *, user_id: int, session_id: str) -> None:
    """End one login of `user_id`: its refresh tokens now; the caller announces
    SESSION_ENDED so its access tokens and sockets end on every instance. Someone
    else's login, or one already ended, is `SessionNotFound`."""
    row = await session.get(UserSession, session_id)
    if row is None or row.user_id != user_id or row.ended_at is not None:
        raise SessionNotFound()
    now = utcnow()
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == session_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    row.ended_at = now
    await session.commit()
