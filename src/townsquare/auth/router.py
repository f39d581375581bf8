from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from townsquare.auth import service as auth_service
from townsquare.auth.client import Client
from townsquare.auth.dependencies import CurrentUser, Passwords, Revocations, Tokens
from townsquare.auth.exceptions import (
    InactiveUser,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenReused,
)
from townsquare.auth.revocations import AccountChange, ChangeKind
from townsquare.auth.schemas import RefreshRequest, TokenPair
from townsquare.auth.throttle import LoginThrottle, TooManyLoginAttempts
from townsquare.platform.dependencies import SessionDep
from townsquare.platform.errors import responses

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenPair,
    responses=responses(InvalidCredentials, InactiveUser, TooManyLoginAttempts),
)
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    passwords: Passwords,
    codec: Tokens,
    client: Client,
) -> TokenPair:
    """OAuth2 password flow: `username` is the account's email."""
    throttle = cast(LoginThrottle, request.app.state.login_throttle)
    client_ip = request.client.host if request.client else "unknown"
    await throttle.attempt(form.username, client_ip)
    user = await auth_service.authenticate(
        session, passwords, email=form.username, password=form.password
    )
    await throttle.succeeded(form.username, client_ip)
    return await auth_service.login(session, codec, user=user, client=client)


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=responses(InvalidRefreshToken, RefreshTokenReused),
)
async def refresh_token(
    body: RefreshRequest, session: SessionDep, codec: Tokens, client: Client
) -> TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once; presenting a
    spent one revokes every token of its login."""
    return await auth_service.refresh(
        session, codec, refresh_token=body.refresh_token, client=client
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidRefreshToken),
)
async def logout(body: RefreshRequest, session: SessionDep, revocations: Revocations) -> None:
    """End the login of this refresh token on every instance: every refresh token
    rotated from it, its access tokens and its WebSockets."""
    user_id, session_id = await auth_service.logout(session, refresh_token=body.refresh_token)
    await revocations.announce(AccountChange(user_id, ChangeKind.SESSION_ENDED, session_id))


@router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidToken),
)
async def logout_everywhere(
    user: CurrentUser, session: SessionDep, revocations: Revocations
) -> None:
    """End every session of the caller: all refresh tokens, all access tokens, and
    every open WebSocket on every instance."""
    await auth_service.end_all_sessions(session, user)
    await session.commit()
    await revocations.revoked(user.id)
