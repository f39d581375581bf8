"""Security headers on every HTTP response, computed once at start."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Same-origin pages with their own scripts and styles, the web client and /docs alike
# (Swagger UI is served from the app's files and started by a script file); `connect-src
# 'self'` covers ws:// and wss:// to the same host in every current browser (CSP level 3).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HSTS = "max-age=31536000; includeSubDomains"


def _encode(headers: dict[str, str]) -> list[tuple[str, tuple[bytes, bytes]]]:
    """(lower-case name, raw header) pairs, encoded once at start."""
    return [
        (name.lower(), (name.lower().encode("latin-1"), value.encode("latin-1")))
        for name, value in headers.items()
    ]


class SecurityHeadersMiddleware:
    """Add HSTS (when `hsts`), nosniff, frame denial, referrer policy and a CSP.

    Headers the app already set on a response are left alone.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        common = {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "strict-origin-when-cross-origin",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
        }
        if hsts:
            common["Strict-Transport-Security"] = HSTS
        self.headers = _encode({**common, "Content-Security-Policy": CONTENT_SECURITY_POLICY})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, raw in extra:
                    if name not in headers:
                        headers.raw.append(raw)
            await send(message)

        await self.app(scope, receive, send_with_headers)
