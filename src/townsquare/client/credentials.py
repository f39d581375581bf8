"""The access token in use, when it runs out, and how the next one is had."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import jwt

from townsquare.auth.schemas import TokenPair
from townsquare.client.errors import ApiError, AuthenticationFailed

# Turns a refresh token into a new pair (POST /auth/refresh).
Refresher = Callable[[str], Awaitable[TokenPair]]
# Any other source of access tokens (a secrets store, a login of the caller's).
TokenProvider = Callable[[], Awaitable[str]]

# Of a token's lifetime, the share left when it is refreshed, at most MAX_MARGIN s.
MARGIN_SHARE = 0.2
MAX_MARGIN = 60.0


def _lifetime(token: str) -> tuple[float, float] | None:
    """(expires_at, lifetime) from a JWT's `exp` and `iat`, read without verifying:
    the client only schedules by them, the server is the one that checks."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        expires_at = float(claims["exp"])
        issued_at = float(claims.get("iat", time.time()))
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return None
    return expires_at, max(0.0, expires_at - issued_at)


class Credentials:
    """Holds the access token and renews it: with the refresh token when there is one
    (each refresh token works once, so at most one refresh is in flight, and a caller
    who saw an older token gets the one just fetched), else with `provider`."""

    def __init__(
        self,
        access_token: str,
        *,
        refresh_token: str | None = None,
        expires_in: float | None = None,
        provider: TokenProvider | None = None,
        refresh_margin: float | None = None,
    ) -> None:
        self.refresh_token = refresh_token
        self.provider = provider
        self.refresh_margin = refresh_margin
        self.refresher: Refresher | None = None
        self.version = 0
        self.refreshes = 0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._set(access_token, expires_in)

    @classmethod
    def from_pair(cls, pair: TokenPair, **options: float | None) -> Credentials:
        return cls(
            pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
            refresh_margin=options.get("refresh_margin"),
        )

    def _set(self, access_token: str, expires_in: float | None) -> None:
        self.access_token = access_token
        read = _lifetime(access_token)
        if read is None and expires_in is not None:
            read = (time.time() + expires_in, float(expires_in))
        self.expires_at: float | None = None
        self.refresh_at: float | None = None
        if read is not None:
            expires_at, lifetime = read
            margin = self.refresh_margin
            if margin is None:
                margin = min(MAX_MARGIN, lifetime * MARGIN_SHARE)
            self.expires_at = expires_at
            # Never before half the lifetime: a margin longer than the lifetime must
            # not turn into a refresh loop.
            self.refresh_at = max(expires_at - margin, expires_at - lifetime / 2)
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def can_refresh(self) -> bool:
        return self.provider is not None or (
            self.refresh_token is not None and self.refresher is not None
        )

    async def changed(self) -> None:
        """Return when the access token is replaced."""
        await self._changed.wait()

    async def refresh(self, seen_version: int | None = None) -> str:
        """A new access token. `seen_version`: the version the caller found stale; if
        another caller has renewed it since, that token is returned, nothing fetched."""
        async with self._lock:
            if seen_version is not None and seen_version != self.version:
                return self.access_token
            if self.refresh_token is not None and self.refresher is not None:
                try:
                    pair = await self.refresher(self.refresh_token)
                except ApiError as exc:
                    if exc.status in (400, 401, 403, 422):
                        raise AuthenticationFailed(f"refresh refused: {exc.detail}") from exc
                    raise
                self.refresh_token = pair.refresh_token
                self._set(pair.access_token, pair.expires_in)
            elif self.provider is not None:
                self._set(await self.provider(), None)
            else:
                raise AuthenticationFailed(
                    "the access token was refused or expired, and there is no refresh "
                    "token or token provider to get a new one"
                )
            self.refreshes += 1
            return self.access_token
