"""The refresh token in an httpOnly cookie, for the service's own web pages.

A browser page that kept its refresh token where scripts can read it (localStorage,
sessionStorage) would hand it to any injected script. With `X-Refresh-Cookie: true`
on `POST /auth/token`, `/auth/refresh` and `/auth/logout`, the token travels only in a
cookie that scripts cannot read (HttpOnly), that is sent only to `/auth` (Path), only
over HTTPS when the page is (Secure), and never with a request started by another site
(SameSite=Strict). The JSON body then carries `refresh_token: null`.

Cross-site request forgery: the cookie is read only when the request carries the
`X-Refresh-Cookie` header. A form on another site cannot set a header, and a script on
another origin can only after a CORS preflight, which never allows this header (it is
not in the CORS allow-list). So only the service's own pages can refresh or end a
login with the cookie. Other clients keep using the JSON body, unchanged.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError

from townsquare.auth.exceptions import InvalidRefreshToken
from townsquare.auth.schemas import RefreshRequest, TokenPair
from townsquare.config import Settings

COOKIE_NAME = "townsquare_refresh"
COOKIE_PATH = "/auth"
HEADER = "X-Refresh-Cookie"
_MAX_TOKEN_LENGTH = 256


class RefreshCookie:
    """How this request exchanges the refresh token: in the JSON body, or (`enabled`)
    in the cookie."""

    def __init__(self, request: Request, *, enabled: bool, settings: Settings) -> None:
        self.enabled = enabled
        self._request = request
        self._max_age = settings.refresh_token_ttl_seconds
        # Over HTTPS (as seen through the proxy's X-Forwarded-Proto), and always in
        # production, which is served over HTTPS only.
        self._secure = request.url.scheme == "https" or settings.is_production

    @property
    def value(self) -> str | None:
        token = self._request.cookies.get(COOKIE_NAME) if self.enabled else None
        return token or None

    def refresh_token(self, body: RefreshRequest | None) -> str:
        """The token to act on: the body's, or in cookie mode the cookie's."""
        if body is not None:
            return body.refresh_token
        if not self.enabled:
            missing = {"loc": ("body", "refresh_token"), "msg": "Field required", "type": "missing"}
            raise RequestValidationError([missing])
        token = self.value
        if token is None or len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidRefreshToken()
        return token

    def deliver(self, response: Response, pair: TokenPair) -> TokenPair:
        """In cookie mode, move the refresh token from the body into the cookie."""
        if not self.enabled or pair.refresh_token is None:
            return pair
        response.set_cookie(
            COOKIE_NAME,
            pair.refresh_token,
            max_age=self._max_age,
            path=COOKIE_PATH,
            secure=self._secure,
            httponly=True,
            samesite="strict",
        )
        return pair.model_copy(update={"refresh_token": None})

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE_NAME, path=COOKIE_PATH, secure=self._secure, httponly=True, samesite="strict"
        )


async def get_refresh_cookie(
    request: Request,
    use_cookie: Annotated[
        bool,
        Header(
            alias=HEADER,
            description="`true`: the refresh token is set and read as an httpOnly, "
            "SameSite=Strict cookie (for the service's own web pages) and the body's "
            "`refresh_token` is null.",
        ),
    ] = False,
) -> RefreshCookie:
    settings = cast(Settings, request.app.state.settings)
    return RefreshCookie(request, enabled=use_cookie, settings=settings)


RefreshCookieDep = Annotated[RefreshCookie, Depends(get_refresh_cookie)]
