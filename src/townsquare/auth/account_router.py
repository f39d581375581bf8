"""Email verification and password reset over HTTP (SPEC section 7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from townsquare.auth import accounts, sessions
from townsquare.auth.dependencies import CurrentUser, Passwords, Revocations
from townsquare.auth.exceptions import (
    EmailAlreadyVerified,
    InvalidAccountToken,
    InvalidToken,
    SessionNotFound,
    TooManyMails,
)
from townsquare.auth.revocations import AccountChange, ChangeKind
from townsquare.auth.schemas import (
    EmailVerification,
    PasswordResetConfirm,
    PasswordResetRequest,
    SessionRead,
)
from townsquare.platform.dependencies import JobsDep, RateLimiterDep, SessionDep, SettingsDep
from townsquare.platform.errors import responses
from townsquare.platform.jobs import JobsUnavailable
from townsquare.users import service as users_service

router = APIRouter(tags=["auth"])


@router.post(
    "/auth/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidAccountToken),
)
async def verify_email(
    body: EmailVerification, session: SessionDep, revocations: Revocations
) -> None:
    """Mark the account's email verified with the token of a verification mail (the
    link in the mail opens the web client, which posts the token here). No sign-in
    needed; each token works once."""
    user = await accounts.verify_email(session, token=body.token)
    await revocations.announce(AccountChange(user.id, ChangeKind.ACCOUNT_UPDATED))


@router.post(
    "/me/verification-email",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=responses(InvalidToken, EmailAlreadyVerified, TooManyMails, JobsUnavailable),
)
async def resend_verification(
    user: CurrentUser,
    session: SessionDep,
    jobs: JobsDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
) -> Response:
    """Send a new verification mail to the caller's address (limited per account by
    VERIFICATION_EMAIL_LIMIT). Links sent before keep working until they expire."""
    account = await users_service.get_user(session, user.id)
    if account.email_verified_at is not None:
        raise EmailAlreadyVerified()
    decision = await limiter.hit(
        limiter.parse(settings.verification_email_limit), "verification-mail", str(account.id)
    )
    if not decision.allowed:
        raise TooManyMails(decision.retry_after)
    await accounts.send_verification(session, jobs, settings, user=account)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/auth/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses=responses(JobsUnavailable),
)
async def request_password_reset(body: PasswordResetRequest, jobs: JobsDep) -> Response:
    """Mail a password-reset link to `email` if it belongs to an account. The answer
    is 202 either way, and takes the same time: nothing here looks the address up
    (a background job does)."""
    await jobs.enqueue(accounts.PASSWORD_RESET_JOB, body.email)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/auth/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidAccountToken),
)
async def confirm_password_reset(
    body: PasswordResetConfirm,
    session: SessionDep,
    passwords: Passwords,
    revocations: Revocations,
) -> None:
    """Set a new password with the token of a reset mail. Every session of the account
    ends at once, on every instance: refresh tokens, access tokens and WebSockets."""
    user = await accounts.reset_password(
        session, passwords, token=body.token, new_password=body.new_password
    )
    await revocations.announce(AccountChange(user.id, ChangeKind.SESSIONS_ENDED))


@router.get("/auth/sessions", response_model=list[SessionRead], responses=responses(InvalidToken))
async def list_sessions(user: CurrentUser, session: SessionDep) -> list[SessionRead]:
    """The caller's open logins, the most recently used first (at most 100): when each
    started and was last used (login or token refresh), from which client, and which
    one this request comes from."""
    rows = await sessions.list_open(session, user_id=user.id)
    return [
        SessionRead(
            id=row.id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            client_ip=row.client_ip,
            current=row.id == user.session_id,
        )
        for row in rows
    ]


@router.delete(
    "/auth/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidToken, SessionNotFound),
)
async def delete_session(
    session_id: Annotated[str, Path(min_length=1, max_length=32, description="The session's id.")],
    user: CurrentUser,
    session: SessionDep,
    revocations: Revocations,
) -> None:
    """End one of the caller's logins (the current one too, if named): its refresh
    tokens at once, and its access tokens and WebSockets on every instance."""
    await sessions.end(session, user_id=user.id, session_id=session_id)
    await revocations.announce(AccountChange(user.id, ChangeKind.SESSION_ENDED, session_id))
