"""Email verification and password reset: single-use tokens sent by mail.

A token is 256 random bits; only its SHA-256 is stored, with the address it was
mailed to and an expiry. Using one is a conditional UPDATE, so a link clicked twice
at once works once.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from townsquare.auth import mails
from townsquare.auth.exceptions import EmailNotVerified, InvalidAccountToken
from townsquare.auth.models import AccountToken
from townsquare.auth.passwords import PasswordHasher
from townsquare.auth.service import end_all_sessions
from townsquare.auth.tokens import hash_refresh_token
from townsquare.config import Settings
from townsquare.platform.database import Database, DirectRead, utcnow
from townsquare.platform.jobs import Jobs
from townsquare.platform.mail import Mail
from townsquare.users import service as users_service
from townsquare.users.models import PERSON, User

logger = logging.getLogger(__name__)

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"  # noqa: S105 (a purpose, not a secret)
SEND_MAIL_JOB = "mail.send"
PASSWORD_RESET_JOB = "auth.password_reset"  # noqa: S105 (a job name)
MAX_TOKEN_LENGTH = 128
# Reset mails one account gets in an hour, whoever asks and from however many
# addresses: a mailbox is not flooded through the reset form.
RESET_MAILS_PER_HOUR = 5


def hash_account_token(token: str) -> str:
    return hash_refresh_token(token)


def _issue(session: AsyncSession, *, user: User, purpose: str, ttl: timedelta) -> str:
    """Add a new token for `user` to the session (the caller commits) and return it."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=hash_account_token(token),
            email=user.email,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return token


async def _consume(session: AsyncSession, *, token: str, purpose: str) -> AccountToken:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidAccountToken()
    now = utcnow()
    row = (
        await session.execute(
            select(AccountToken).where(
                AccountToken.token_hash == hash_account_token(token),
                AccountToken.purpose == purpose,
            )
        )
    ).scalar_one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise InvalidAccountToken()
    spent = await session.execute(
        update(AccountToken)
        .where(AccountToken.id == row.id, AccountToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        # Another request used it first.
        await session.rollback()
        raise InvalidAccountToken()
    return row


# -- email verification --------------------------------------------------------------------


async def send_verification(
    session: AsyncSession, jobs: Jobs, settings: Settings, *, user: User
) -> None:
    """Mail `user` a new verification link (for their current address)."""
    ttl = timedelta(seconds=settings.email_verification_ttl_seconds)
    token = _issue(session, user=user, purpose=VERIFY_EMAIL, ttl=ttl)
    await session.commit()
    mail = mails.verification_mail(
        name=user.name, email=user.email, token=token, public_url=settings.public_url, ttl=ttl
    )
    await jobs.enqueue(SEND_MAIL_JOB, mail.to_dict())


async def verify_email(session: AsyncSession, *, token: str) -> User:
    row = await _consume(session, token=token, purpose=VERIFY_EMAIL)
    user = await users_service.get_user(session, row.user_id)
    if row.email != user.email:
        # Mailed to an address the account has since left: it proves nothing now.
        await session.rollback()
        raise InvalidAccountToken()
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    await session.commit()
    return user


_EMAIL_VERIFIED = DirectRead(
    select(User.email_verified_at.is_not(None).label("verified")).where(
        User.id == bindparam("user_id")
    )
)


async def may_participate(
    reader: Database | AsyncSession, settings: Settings, user_id: int
) -> bool:
    """Whether `user_id` may post into and join rooms: always (no I/O), unless
    REQUIRE_VERIFIED_EMAIL is on and the account's email is not verified, read fresh in
    one statement: on the caller's session when it holds one (the REST post), else on a
    pooled connection (the WebSocket join). Every path that posts or joins asks this."""
    if not settings.require_verified_email:
        return True
    if isinstance(reader, Database):
        row = await _EMAIL_VERIFIED.fetch(reader, user_id=user_id)
        return row is not None and bool(row["verified"])
    result = await reader.execute(_EMAIL_VERIFIED.statement, {"user_id": user_id})
    return bool(result.scalar_one_or_none())


async def ensure_email_verified(session: AsyncSession, settings: Settings, user_id: int) -> None:
    """`may_participate`, as a 403 (EmailNotVerified) for the REST routes."""
    if not await may_participate(session, settings, user_id):
        raise EmailNotVerified()


# -- password reset ------------------------------------------------------------------------


async def request_password_reset(
    session: AsyncSession, jobs: Jobs, settings: Settings, *, email: str
) -> None:
    """The job behind POST /auth/password-reset: mail a reset link if `email` is a
    (person's, enabled) account; silently nothing otherwise. Running as a job keeps
    the HTTP answer the same, in the same time, whether or not the account exists."""
    user = await users_service.get_user_by_email(session, email)
    if user is None or not user.is_active or user.kind != PERSON:
        logger.info("password reset asked for an address without an account")
        return
    # Lock the account's row first (a write, on SQLite the database's write lock), so
    # concurrent requests for one account count one after the other.
    await session.execute(
        update(User)
        .where(User.id == user.id)
        .values(token_version=User.token_version)
        .execution_options(synchronize_session=False)
    )
    recent = await session.scalar(
        select(func.count())
        .select_from(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == PASSWORD_RESET,
            AccountToken.created_at > utcnow() - timedelta(hours=1),
        )
    )
    if (recent or 0) >= RESET_MAILS_PER_HOUR:
        logger.warning("password reset for user %s not sent: hourly limit reached", user.id)
        return
    ttl = timedelta(seconds=settings.password_reset_ttl_seconds)
    token = _issue(session, user=user, purpose=PASSWORD_RESET, ttl=ttl)
    await session.commit()
    mail: Mail = mails.password_reset_mail(
        name=user.name, email=user.email, token=token, public_url=settings.public_url, ttl=ttl
    )
    await jobs.enqueue(SEND_MAIL_JOB, mail.to_dict())


async def reset_password(
    session: AsyncSession, passwords: PasswordHasher, *, token: str, new_password: str
) -> User:
    """Set a new password with a reset token; every session of the account ends (the
    caller announces it once this returns)."""
    row = await _consume(session, token=token, purpose=PASSWORD_RESET)
    user = await users_service.get_user(session, row.user_id)
    if not user.is_active or row.email != user.email:
        await session.rollback()
        raise InvalidAccountToken()
    user.password_hash = await passwords.hash(new_password)
    # Following a link mailed to the address proves it is the owner's.
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    # Other reset links of the account stop working too.
    await session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == PASSWORD_RESET,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await end_all_sessions(session, user)
    await session.commit()
    return user
