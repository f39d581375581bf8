"""Security headers on every HTTP response, computed once at start."""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Same-origin pages with their own scripts and styles; `connect-src 'self'` covers
# ws:// and wss:// to the same host in every current browser (CSP level 3).
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

# FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from a CDN and start them
# with an inline script. They exist only outside production, where this looser policy
# applies to those pages alone.
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' 'unsafe-inline' {DOCS_CDN}",
        f"style-src 'self' 'unsafe-inline' {DOCS_CDN} https://fonts.googleapis.com",
        "font-src 'self' https://fonts.gstatic.com",
        "img-src 'self' data: https://fastapi.tiangolo.com",
        f"worker-src 'self' blob: {DOCS_CDN}",
        "connect-src 'self'",
        "object-src 'none'",
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

    def __init__(self, app: ASGIApp, *, hsts: bool, docs_paths: Collection[str] = ()) -> None:
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
        self.docs_headers = _encode(
            {**common, "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY}
        )
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.docs_headers if scope["path"] in self.docs_paths else self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, raw in extra:
                    if name not in headers:
                        headers.raw.append(raw)
            await send(message)

        await self.app(scope, receive, send_with_headers)
