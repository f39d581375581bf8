from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from townsquare.auth import service as auth_service
from townsquare.auth.cookies import RefreshCookieDep
from townsquare.auth.dependencies import CurrentUser, Passwords, Revocations, Tokens
from townsquare.auth.exceptions import (
    InactiveUser,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenReused,
)
from townsquare.auth.schemas import RefreshRequest, TokenPair
from townsquare.platform.dependencies import SessionDep
from townsquare.platform.errors import responses

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenPair,
    responses=responses(InvalidCredentials, InactiveUser),
)
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    passwords: Passwords,
    codec: Tokens,
    cookie: RefreshCookieDep,
    response: Response,
) -> TokenPair:
    """OAuth2 password flow: `username` is the account's email."""
    user = await auth_service.authenticate(
        session, passwords, email=form.username, password=form.password
    )
    return cookie.deliver(response, await auth_service.login(session, codec, user=user))


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=responses(InvalidRefreshToken, RefreshTokenReused),
)
async def refresh_token(
    session: SessionDep,
    codec: Tokens,
    cookie: RefreshCookieDep,
    response: Response,
    body: RefreshRequest | None = None,
) -> TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once; presenting a
    spent one revokes every token of its login. With `X-Refresh-Cookie: true` the token
    comes from the cookie and the body may be left out."""
    token = cookie.refresh_token(body)
    return cookie.deliver(response, await auth_service.refresh(session, codec, refresh_token=token))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidRefreshToken),
)
async def logout(
    session: SessionDep,
    cookie: RefreshCookieDep,
    response: Response,
    body: RefreshRequest | None = None,
) -> None:
    """Revoke the refresh token and every token rotated from the same login. With
    `X-Refresh-Cookie: true` the cookie's login ends and the cookie is cleared; that
    form always answers 204, as there is nothing left to sign out of."""
    if cookie.enabled and body is None:
        cookie.clear(response)
        if cookie.value is None:
            return
        with contextlib.suppress(InvalidRefreshToken):
            await auth_service.logout(session, refresh_token=cookie.refresh_token(None))
        return
    await auth_service.logout(session, refresh_token=cookie.refresh_token(body))


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
