"""Logins, token rotation with reuse detection, and logout."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.auth.exceptions import (
    InactiveUser,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenReused,
)
from townsquare.auth.models import RefreshToken
from townsquare.auth.passwords import PasswordHasher
from townsquare.auth.principals import Login, Principal
from townsquare.auth.revocations import AccountChange, ChangeKind, SessionRevocations
from townsquare.auth.schemas import TokenPair
from townsquare.auth.tokens import TokenCodec, hash_refresh_token, new_refresh_token
from townsquare.platform.database import Database, utcnow
from townsquare.users import service as users_service
from townsquare.users.models import User

# Longer passwords cannot be ours (signup caps them at 128); refusing them early keeps
# a megabyte "password" from costing a hash.
MAX_LOGIN_PASSWORD_LENGTH = 1024


async def authenticate(
    session: AsyncSession, passwords: PasswordHasher, *, email: str, password: str
) -> User:
    if len(password) > MAX_LOGIN_PASSWORD_LENGTH or len(email) > 254:
        raise InvalidCredentials()
    user = await users_service.get_user_by_email(session, email)
    if not await passwords.verify(user.password_hash if user else None, password):
        raise InvalidCredentials()
    assert user is not None
    if not user.is_active:
        raise InactiveUser()
    if passwords.needs_rehash(user.password_hash):
        # The hashing parameters changed since this hash was made; upgrade it now that
        # the plain password is at hand.
        user.password_hash = await passwords.hash(password)
        await session.commit()
    return user


async def _issue_pair(
    session: AsyncSession, codec: TokenCodec, *, user: User, family_id: str, now: datetime
) -> TokenPair:
    refresh_token = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=hash_refresh_token(refresh_token),
            created_at=now,
            expires_at=now + codec.refresh_ttl,
        )
    )
    await session.commit()
    return TokenPair(
        access_token=codec.encode_access(
            user_id=user.id, token_version=user.token_version, session_id=family_id, now=now
        ),
        expires_in=int(codec.access_ttl.total_seconds()),
        refresh_token=refresh_token,
    )


async def login(session: AsyncSession, codec: TokenCodec, *, user: User) -> TokenPair:
    return await _issue_pair(session, codec, user=user, family_id=uuid.uuid4().hex, now=utcnow())


async def _revoke_family(session: AsyncSession, family_id: str, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.commit()


async def refresh(
    session: AsyncSession,
    codec: TokenCodec,
    revocations: SessionRevocations,
    *,
    refresh_token: str,
) -> TokenPair:
    now = utcnow()
    token_hash = hash_refresh_token(refresh_token)
    row = (
        await session.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    ).scalar_one_or_none()
    if row is None:
        raise InvalidRefreshToken()
    # Plain values: a rollback below expires the ORM row.
    token_id, family_id, user_id = row.id, row.family_id, row.user_id
    if row.used_at is not None:
        # A spent token came back: either its owner or a thief holds a copy, and we
        # cannot tell which, so the whole login ends, its access tokens included.
        await _end_login(session, revocations, user_id, family_id, now)
        raise RefreshTokenReused()
    if row.revoked_at is not None or row.expires_at <= now:
        raise InvalidRefreshToken()
    # Spend the token with a conditional update, so two concurrent refreshes with the
    # same token cannot both succeed: the loser sees a spent token, which is reuse.
    spent = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == token_id,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        await _end_login(session, revocations, user_id, family_id, now)
        raise RefreshTokenReused()
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        await session.commit()
        raise InvalidToken()
    return await _issue_pair(session, codec, user=user, family_id=family_id, now=now)


async def logout(
    session: AsyncSession, revocations: SessionRevocations, *, refresh_token: str
) -> None:
    """End the login `refresh_token` belongs to: its refresh tokens, and (announced to
    every instance) its access tokens and sockets."""
    row = (
        await session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
        )
    ).scalar_one_or_none()
    if row is None:
        raise InvalidRefreshToken()
    await _end_login(session, revocations, row.user_id, row.family_id, utcnow())


async def _end_login(
    session: AsyncSession,
    revocations: SessionRevocations,
    user_id: int,
    family_id: str,
    now: datetime,
) -> None:
    await _revoke_family(session, family_id, now)
    await revocations.announce(AccountChange(user_id, ChangeKind.SESSION_ENDED, family_id))


async def end_all_sessions(session: AsyncSession, user: User) -> None:
    """Invalidate every access and refresh token of `user`, within the caller's
    transaction (the caller commits)."""
    user.token_version += 1
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def load_login(database: Database, user_id: int, session_id: str | None) -> Login | None:
    """The account and whether login `session_id` is still open, in one statement on an
    autocommit connection (one round trip): the principal cache's loader."""
    users = User.__table__
    if session_id is None:
        session_open: ColumnElement[bool] = true()
    else:
        tokens = RefreshToken.__table__
        session_open = (
            select(tokens.c.id)
            .where(
                tokens.c.family_id == session_id,
                tokens.c.user_id == users.c.id,
                tokens.c.revoked_at.is_(None),
            )
            .exists()
        )
    statement = select(
        users.c.id,
        users.c.name,
        users.c.email,
        users.c.is_admin,
        users.c.is_active,
        users.c.token_version,
        session_open.label("session_open"),
    ).where(users.c.id == user_id)
    async with database.reader() as connection:
        row = (await connection.execute(statement)).one_or_none()
    if row is None:
        return None
    principal = Principal(
        id=row.id,
        name=row.name,
        email=row.email,
        is_admin=row.is_admin,
        is_active=row.is_active,
        token_version=row.token_version,
        session_id=session_id,
    )
    return Login(principal, session_open=bool(row.session_open))
