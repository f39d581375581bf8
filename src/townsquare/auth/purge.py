"""Forget auth rows that can no longer be used: run by the periodic purge job."""

from __future__ import annotations

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.auth.models import AccountToken, RefreshToken, UserSession
from townsquare.platform.database import utcnow


async def purge_spent_tokens(session: AsyncSession) -> dict[str, int]:
    """Delete refresh tokens that are expired or revoked, mailed tokens that are
    expired or used, and sessions that ended or expired.

    A rotated (used) refresh token of a live login is kept until it expires: presenting
    it again is how a stolen copy is detected (and the login ended). Once it expired it
    is useless to the thief and to the detector alike.
    """
    now = utcnow()
    refresh = await session.execute(
        delete(RefreshToken).where(
            or_(RefreshToken.expires_at <= now, RefreshToken.revoked_at.is_not(None))
        )
    )
    mailed = await session.execute(
        delete(AccountToken).where(
            or_(AccountToken.expires_at <= now, AccountToken.used_at.is_not(None))
        )
    )
    sessions = await session.execute(
        delete(UserSession).where(
            or_(UserSession.expires_at <= now, UserSession.ended_at.is_not(None))
        )
    )
    await session.commit()
    return {
        "refresh_tokens": refresh.rowcount,  # type: ignore[attr-defined]
        "account_tokens": mailed.rowcount,  # type: ignore[attr-defined]
        "sessions": sessions.rowcount,  # type: ignore[attr-defined]
    }
