from __future__ import annotations

import contextlib
from typing import cast

from fastapi import APIRouter, Request, Response, status

from townsquare.auth import service as auth_service
from townsquare.auth.client import Client
from townsquare.auth.cookies import RefreshCookieDep
from townsquare.auth.dependencies import CurrentUser, LoginForm, Passwords, Revocations, Tokens
from townsquare.auth.exceptions import (
    InactiveUser,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenReused,
)
from townsquare.auth.schemas import RefreshRequest, TokenPair
from townsquare.auth.throttle import LoginThrottle, TooManyLoginAttempts
from townsquare.platform.dependencies import SessionDep
from townsquare.platform.errors import responses
from townsquare.users import service as users_service

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenPair,
    responses=responses(InvalidCredentials, InactiveUser, TooManyLoginAttempts),
)
async def issue_token(
    form: LoginForm,
    request: Request,
    session: SessionDep,
    passwords: Passwords,
    codec: Tokens,
    client: Client,
    cookie: RefreshCookieDep,
    response: Response,
) -> TokenPair:
    """OAuth2 password flow: `username` is the account's email."""
    throttle = cast(LoginThrottle, request.app.state.login_throttle)
    client_ip = request.client.host if request.client else "unknown"
    await throttle.attempt(form.username, client_ip)
    user = await auth_service.authenticate(
        session, passwords, email=form.username, password=form.password
    )
    await throttle.succeeded(form.username, client_ip)
    return cookie.deliver(
        response, await auth_service.login(session, codec, user=user, client=client)
    )


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=responses(InvalidRefreshToken, RefreshTokenReused),
)
async def refresh_token(
    session: SessionDep,
    codec: Tokens,
    revocations: Revocations,
    client: Client,
    cookie: RefreshCookieDep,
    response: Response,
    body: RefreshRequest | None = None,
) -> TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once; presenting a
    spent one ends its whole login (refresh tokens, access tokens and sockets). With
    `X-Refresh-Cookie: true` the token comes from the cookie and the body may be left
    out."""
    token = cookie.refresh_token(body)
    pair = await auth_service.refresh(
        session, codec, revocations, refresh_token=token, client=client
    )
    return cookie.deliver(response, pair)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidRefreshToken),
)
async def logout(
    session: SessionDep,
    revocations: Revocations,
    cookie: RefreshCookieDep,
    response: Response,
    body: RefreshRequest | None = None,
) -> None:
    """End the login of this refresh token on every instance: every refresh token
    rotated from it, its access tokens (refused from the next request on) and its
    WebSockets. With `X-Refresh-Cookie: true` the cookie's login ends and the cookie is
    cleared; that form always answers 204, as there is nothing left to sign out of."""
    if cookie.enabled and body is None:
        cookie.clear(response)
        if cookie.value is None:
            return
        with contextlib.suppress(InvalidRefreshToken):
            await auth_service.logout(
                session, revocations, refresh_token=cookie.refresh_token(None)
            )
        return
    await auth_service.logout(session, revocations, refresh_token=cookie.refresh_token(body))


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
    await auth_service.end_all_sessions(session, await users_service.get_user(session, user.id))
    await session.commit()
    await revocations.revoked(user.id)
