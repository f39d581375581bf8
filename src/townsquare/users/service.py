"""Users: creation, lookup, listing and self-service changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from townsquare.platform.database import Database, DirectRead
from townsquare.platform.errors import Forbidden
from townsquare.users.exceptions import EmailAlreadyRegistered, LastAdmin, UserNotFound
from townsquare.users.models import PERSON, User

# What a reader sees of an account (no secrets); the fields of `UserRead`.
_ACCOUNT_COLUMNS = (
    User.id,
    User.name,
    User.email,
    User.email_verified_at.is_not(None).label("email_verified"),
    User.is_admin,
    User.is_active,
    User.created_at,
)
_READ_USER = DirectRead(select(*_ACCOUNT_COLUMNS).where(User.id == bindparam("user_id")))


async def read_user(database: Database, user_id: int) -> Mapping[str, Any]:
    """One account, for display: one round trip, no ORM, no transaction."""
    row = await _READ_USER.fetch(database, user_id=user_id)
    if row is None:
        raise UserNotFound()
    return row


async def get_user(session: AsyncSession, user_id: int) -> User:
    """The ORM row, for a caller that changes it."""
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email.lower()))
    return result.scalar_one_or_none()


async def list_users(connection: AsyncConnection, *, skip: int, limit: int) -> Sequence[RowMapping]:
    # Service accounts (API keys) author messages but are not people to list.
    statement = (
        select(*_ACCOUNT_COLUMNS)
        .where(User.kind == PERSON)
        .order_by(User.id)
        .offset(skip)
        .limit(limit)
    )
    return (await connection.execute(statement)).mappings().all()


async def create_user(
    session: AsyncSession, *, name: str, email: str, password_hash: str, is_admin: bool = False
) -> User:
    if await get_user_by_email(session, email) is not None:
        raise EmailAlreadyRegistered()
    user = User(name=name, email=email.lower(), password_hash=password_hash, is_admin=is_admin)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        # Two signups with one email raced past the check above; the unique index
        # decided, and the loser gets the same answer as if it had come second.
        await session.rollback()
        raise EmailAlreadyRegistered() from exc
    return user


async def update_user(
    session: AsyncSession,
    user: User,
    *,
    name: str | None = None,
    email: str | None = None,
    password_hash: str | None = None,
) -> User:
    if name is not None:
        user.name = name
    if email is not None and email != user.email:
        if await get_user_by_email(session, email) is not None:
            raise EmailAlreadyRegistered()
        user.email = email
        # A new address is unverified until its owner follows the link mailed to it.
        user.email_verified_at = None
    if password_hash is not None:
        user.password_hash = password_hash
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise EmailAlreadyRegistered() from exc
    return user


async def set_account_flags(
    session: AsyncSession,
    user: User,
    *,
    name: str | None = None,
    is_active: bool | None = None,
    is_admin: bool | None = None,
) -> User:
    if name is not None:
        user.name = name
    if is_active is not None:
        user.is_active = is_active
    if is_admin is not None:
        user.is_admin = is_admin
    await session.commit()
    return user


async def check_rights_change(
    session: AsyncSession,
    user: User,
    *,
    actor_id: int,
    is_active: bool | None,
    is_admin: bool | None,
) -> None:
    """Call first in the transaction of an admin's change to `user`. A change that
    takes admin rights away (demoting or disabling an active admin) is refused when it
    would leave no active admin, and when `actor_id` lost its own rights meanwhile."""
    if user.is_admin and user.is_active and (is_admin is False or is_active is False):
        await _ensure_admins_remain(session, actor_id=actor_id, target_id=user.id)


async def _ensure_admins_remain(session: AsyncSession, *, actor_id: int, target_id: int) -> None:
    # Two admins taking each other's rights at once must not both succeed, so these
    # changes are serialized: PostgreSQL locks the row of every active admin (a second
    # change waits, then reads what the first committed); SQLite has one writer at a
    # time, and this no-op write comes first so that the read below happens after any
    # other writer has committed.
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(User).where(User.id == actor_id).values(is_admin=User.is_admin)
        )
    admins = set(
        (
            await session.execute(
                select(User.id)
                .where(User.is_admin.is_(True), User.is_active.is_(True))
                .order_by(User.id)  # every change locks in one order: no deadlock
                .with_for_update()
            )
        ).scalars()
    )
    if actor_id not in admins:
        await session.rollback()
        raise Forbidden("Administrator rights required")
    if not admins - {target_id}:
        await session.rollback()
        raise LastAdmin()
