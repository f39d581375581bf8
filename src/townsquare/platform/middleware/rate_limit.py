"""Refuse a client over its request rate with 429, `Retry-After` and the error envelope."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from townsquare.platform.errors import error_response
from townsquare.platform.ratelimit import RateLimiter

# Given the request, the signed-in user's id as a string, or None when anonymous.
UserIdentifier = Callable[[Scope], str | None]


class RateLimitMiddleware:
    """Per-IP limits on the listed `(method, path)` routes (login, signup), else one limit
    per signed-in user, or per client IP for anonymous requests.

    Runs before routing, so a flood is refused before any body is parsed or any
    database is touched. WebSocket handshakes and `exempt_paths` pass through.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        default: str,
        per_route: Mapping[tuple[str, str], str],
        identify_user: UserIdentifier,
        exempt_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.default = limiter.parse(default)
        self.per_route = {route: limiter.parse(limit) for route, limit in per_route.items()}
        self.identify_user = identify_user
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        strict = self.per_route.get((method, path))
        if strict is not None:
            decision = await self.limiter.hit(strict, "route", method, path, ip)
        else:
            user = self.identify_user(scope)
            if user is not None:
                decision = await self.limiter.hit(self.default, "user", user)
            else:
                decision = await self.limiter.hit(self.default, "ip", ip)
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        response = error_response(
            429,
            "Too many requests, retry later",
            {"Retry-After": str(decision.retry_after)},
        )
        await response(scope, receive, send)
