"""The `/ws` endpoint: Origin check, authentication, then one `Connection`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import cast
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError

from townsquare.auth import service as auth_service
from townsquare.auth.tokens import TokenCodec
from townsquare.platform.errors import AppError, error_response
from townsquare.rooms.admission import Admission
from townsquare.rooms.connection import Connection
from townsquare.rooms.frames import ClientGone, CloseConnection, check_frame, error_text
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
from townsquare.users.models import User

logger = logging.getLogger(__name__)

router = APIRouter()

BYE_TIMEOUT = 1.0


def _origin_allowed(origin: str, host: str | None, allowed: list[str]) -> bool:
    """A browser's handshake is allowed from ALLOWED_ORIGINS and from the service's own
    pages (the Origin names the host the browser connected to), so the bundled web
    client works with no configuration while another site's page is refused."""
    if origin in allowed or "*" in allowed:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    """Live rooms. The frames are documented in /asyncapi.json."""
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
            user, expires_at = await _authenticate(websocket, manager, header_token)
        except CloseConnection as closing:
            await _close(websocket, closing)
            return
        except ClientGone:
            return
        if pending:
            admission.authenticated(ip)
            pending = False
        socket_id = uuid.uuid4().hex
        if not await admission.claim_user_slot(user.id, socket_id):
            limit = admission.max_per_user
            await _close(
                websocket,
                CloseConnection(
                    CloseCode.POLICY_VIOLATION,
                    f"too many connections: at most {limit} per user, close one first",
                ),
            )
            return
        try:
            await _serve(websocket, manager, user, expires_at)
        finally:
            await admission.release_user_slot(user.id, socket_id)
    finally:
        admission.leave(ip, pending=pending)


async def _serve(
    websocket: WebSocket, manager: ConnectionManager, user: User, expires_at: float
) -> None:
    settings = manager.settings
    connection = Connection(websocket, manager, user=user, token_expires_at=expires_at)
    manager.register(connection)
    try:
        connection.send(
            WelcomeFrame(
                user=connection.public,
                connection_id=connection.id,
                heartbeat=Heartbeat(
                    interval=settings.ws_heartbeat_interval_seconds,
                    timeout=settings.ws_heartbeat_timeout_seconds,
                ),
            ).model_dump_json()
        )
        outcome = await connection.run()
        if outcome is not None:
            await _close(websocket, outcome)
    finally:
        manager.unregister(connection)
        connection.closed.set()


def _bearer_token(websocket: WebSocket) -> str | None:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


async def _authenticate(
    websocket: WebSocket, manager: ConnectionManager, header_token: str | None
) -> tuple[User, float]:
    """Accept the socket and return its user and when their access token expires: from
    `Authorization: Bearer` on the handshake (checked before accepting), or else from
    a first `auth` frame within the auth timeout."""
    if header_token is not None:
        try:
            return await _user_for(websocket, manager, header_token)
        finally:
            await websocket.accept()
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
    return await _user_for(websocket, manager, frame.token)


async def _user_for(
    websocket: WebSocket, manager: ConnectionManager, token: str
) -> tuple[User, float]:
    codec = cast(TokenCodec, websocket.app.state.tokens)
    try:
        if len(token) > 4096:
            raise CloseConnection(
                CloseCode.POLICY_VIOLATION,
                "Could not validate credentials",
                ErrorCode.INVALID_TOKEN,
            )
        async with manager.database.sessions() as session:
            user = await auth_service.user_for_access_token(session, codec, token)
        return user, float(codec.decode_access(token).expires_at)
    except AppError as exc:
        raise CloseConnection(
            CloseCode.POLICY_VIOLATION, exc.message, ErrorCode.INVALID_TOKEN
        ) from exc


async def _close(websocket: WebSocket, closing: CloseConnection) -> None:
    """`bye`, then the close frame; best effort, as the client may be gone or stuck."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(BYE_TIMEOUT):
            if closing.error is not None:
                await websocket.send_text(error_text(closing.error, closing.reason))
            await websocket.send_text(ByeFrame(reason=closing.reason).model_dump_json())
    with contextlib.suppress(Exception):
        await websocket.close(code=closing.code, reason=closing.reason[:120])
    logger.info("websocket closed %d: %s", closing.code, closing.reason)
