"""The `/ws` endpoint: Origin check, authentication, then one `Connection`.

Mounted as a plain ASGI endpoint, so the connection's writer sends through the
server's own `send`: a room's frame is one ASGI message shared by every recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import cast
from urllib.parse import urlsplit

from pydantic import ValidationError
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from townsquare.auth.tokens import AccessClaims
from townsquare.platform.errors import error_response
from townsquare.platform.metrics import Metrics
from townsquare.rooms.account import Account
from townsquare.rooms.admission import Admission
from townsquare.rooms.connection import Connection
from townsquare.rooms.errors import ClientGone, CloseConnection, check_frame, error_text
from townsquare.rooms.manager import ConnectionManager
from townsquare.rooms.protocol import (
    CLIENT_FRAME,
    AuthFrame,
    ByeFrame,
    CloseCode,
    ErrorCode,
    Heartbeat,
    WelcomeFrame,
)

logger = logging.getLogger(__name__)

BYE_TIMEOUT = 1.0


def _origin_allowed(origin: str, host: str | None, allowed: list[str]) -> bool:
    """A browser's handshake is allowed from ALLOWED_ORIGINS and from the service's own
    pages (the Origin names the host the browser connected to), so the bundled web
    client works with no configuration while another site's page is refused."""
    if origin in allowed or "*" in allowed:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """Live rooms. The frames are documented in /asyncapi.json."""
    websocket = WebSocket(scope, receive, send)
    manager = cast(ConnectionManager, websocket.app.state.rooms)
    settings = manager.settings
    origin = websocket.headers.get("origin")
    if origin is not None and not _origin_allowed(
        origin, websocket.headers.get("host"), settings.allowed_origins
    ):
        # Before accept: the handshake is refused (HTTP 403), nothing is opened.
        await websocket.close(code=CloseCode.POLICY_VIOLATION)
        return
    if not manager.accepting:
        await websocket.close(code=CloseCode.SERVICE_RESTART)
        return
    admission = cast(Admission, websocket.app.state.admission)
    ip = websocket.client.host if websocket.client else "unknown"
    header_token = _bearer_token(websocket)
    # A handshake that brings its token is checked before it is accepted, so only the
    # sockets that still have to send `auth` count as pending for their address.
    pending = header_token is None
    refusal = admission.enter(ip, pending=pending)
    if refusal is not None:
        # Before accept, with a status and Retry-After: nothing is opened, and the
        # transport is closed at once.
        await websocket.send_denial_response(
            error_response(
                refusal.status, refusal.detail, {"Retry-After": str(refusal.retry_after)}
            )
        )
        return
    try:
        try:
            account, claims = await _authenticate(websocket, manager, header_token)
        except CloseConnection as closing:
            await _close(websocket, closing)
            return
        except ClientGone:
            return
        except Exception:
            # Logged once here (with the request id), and the client still gets a close.
            logger.exception("websocket handshake failed")
            await _close(websocket, CloseConnection(CloseCode.INTERNAL_ERROR, "internal error"))
            return
        if pending:
            admission.authenticated(ip)
            pending = False
        socket_id = uuid.uuid4().hex
        claimed = await admission.claim_user_slot(account.id, socket_id)
        try:
            if websocket.client_state is WebSocketState.CONNECTING:
                # A handshake with its token is accepted only now, so the answer to the
                # handshake and `welcome` leave together.
                await websocket.accept()
            if not claimed:
                limit = admission.max_per_user
                await _close(
                    websocket,
                    CloseConnection(
                        CloseCode.POLICY_VIOLATION,
                        f"too many connections: at most {limit} per user, close one first",
                    ),
                )
                return
            await _serve(websocket, send, manager, account, claims, socket_id)
        finally:
            if claimed:
                await admission.release_user_slot(account.id, socket_id)
    finally:
        admission.leave(ip, pending=pending)


async def _serve(
    websocket: WebSocket,
    send: Send,
    manager: ConnectionManager,
    account: Account,
    claims: AccessClaims,
    socket_id: str,
) -> None:
    settings = manager.settings
    connection = Connection(
        websocket,
        send,
        manager,
        connection_id=socket_id,
        account=account,
        token_expires_at=float(claims.expires_at),
        session_id=claims.session_id,
        throttle=manager.throttles.acquire(account.id),
    )
    metrics = cast(Metrics, websocket.app.state.metrics)
    manager.register(connection)
    metrics.websockets_open.inc()
    try:
        welcome = WelcomeFrame(
            user=account.public,
            connection_id=connection.id,
            heartbeat=Heartbeat(
                interval=settings.ws_heartbeat_interval_seconds,
                timeout=settings.ws_heartbeat_timeout_seconds,
            ),
        ).model_dump_json()
        try:
            # Sent here, before the writer starts (nothing else can be queued yet), so
            # it leaves in the same write as the answer to the handshake.
            await connection.send_frame(welcome)
        except OSError:
            return  # the client is gone already (uvicorn's ClientDisconnected)
        outcome = await connection.run()
        if outcome is not None:
            await _close(websocket, outcome)
    finally:
        manager.unregister(connection)
        metrics.websockets_open.dec()
        connection.closed.set()


class _Endpoint:
    """An ASGI app (not a function), so Starlette hands it the raw scope, receive and
    send instead of wrapping it in a session."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await websocket_endpoint(scope, receive, send)


endpoint = _Endpoint()
# Also a route, so the app's routing knows `/ws` (served ahead of the middleware by
# `EdgeMiddleware`).
route = WebSocketRoute("/ws", endpoint, name="ws")


def _bearer_token(websocket: WebSocket) -> str | None:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


async def _authenticate(
    websocket: WebSocket, manager: ConnectionManager, header_token: str | None
) -> tuple[Account, AccessClaims]:
    """The socket's account and its token's claims: from `Authorization: Bearer` on the
    handshake (checked before accepting; accepted here only to be told why not), or
    else from a first `auth` frame within the auth timeout (accepted here first)."""
    if header_token is not None:
        try:
            return await manager.authenticate(header_token)
        except BaseException:
            await websocket.accept()
            raise
    await websocket.accept()
    settings = manager.settings
    try:
        async with asyncio.timeout(settings.ws_auth_timeout_seconds):
            message = await websocket.receive()
    except TimeoutError:
        raise CloseConnection(
            CloseCode.POLICY_VIOLATION, "not authenticated", ErrorCode.NOT_AUTHENTICATED
        ) from None
    if message["type"] == "websocket.disconnect":
        raise ClientGone()
    text = check_frame(message, settings.ws_max_frame_bytes)
    try:
        frame = CLIENT_FRAME.validate_json(text)
    except ValidationError:
        frame = None
    if not isinstance(frame, AuthFrame):
        raise CloseConnection(
            CloseCode.POLICY_VIOLATION, "first frame must be auth", ErrorCode.NOT_AUTHENTICATED
        )
    return await manager.authenticate(frame.token)


async def _close(websocket: WebSocket, closing: CloseConnection) -> None:
    """`bye`, then the close frame; best effort and bounded, as the client may be gone
    or not reading."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(BYE_TIMEOUT):
            if closing.error is not None:
                await websocket.send_text(error_text(closing.error, closing.reason))
            await websocket.send_text(ByeFrame(reason=closing.reason).model_dump_json())
    with contextlib.suppress(Exception):
        async with asyncio.timeout(BYE_TIMEOUT):
            await websocket.close(code=closing.code, reason=closing.reason[:120])
    logger.info("websocket closed %d: %s", closing.code, closing.reason)
