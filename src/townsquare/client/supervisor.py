"""The client's one background task: connect, serve the connection, decide what its
end means, wait, connect again.

While a connection is up, three loops run beside each other: the reader (every
frame is dispatched without awaiting, so frames are handled strictly in order), the
heartbeat (a `ping` whenever the client has been quiet, and an abort when the
server has been silent past `welcome.heartbeat.timeout`: a dead peer sends no close
frame and no FIN), and the token keeper (a `refresh` frame before the access token
expires, and whenever another path renewed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from townsquare.client.connection import Connection, Rejected
from townsquare.client.errors import (
    ApiError,
    AuthenticationFailed,
    ClientError,
    ProtocolError,
    RoomLeft,
)
from townsquare.client.events import Connected, Disconnected
from townsquare.rooms.protocol import (
    ByeFrame,
    CloseCode,
    ErrorCode,
    ErrorFrame,
    JoinedFrame,
    LeftFrame,
    MessageFrame,
    PingFrame,
    PresenceFrame,
    RefreshFrame,
    ServerFrame,
    TypingEventFrame,
)

if TYPE_CHECKING:
    from townsquare.client.client import Client

logger = logging.getLogger("townsquare.client")

AUTH_ERRORS = {ErrorCode.INVALID_TOKEN, ErrorCode.TOKEN_EXPIRED, ErrorCode.NOT_AUTHENTICATED}
# A connection that lived this long was healthy: the next reconnect starts the backoff
# over. A shorter one (accepted, then closed at once) keeps the delays growing.
STABLE_SECONDS = 10.0
# After `rate_limited`, the client sends nothing for this long.
RATE_LIMIT_PAUSE = 1.0


class HeartbeatTimeout(Exception):
    pass


async def supervise(client: Client) -> None:
    try:
        await _supervise(client)
    except asyncio.CancelledError:
        raise
    except ClientError as exc:
        client.fail(exc)
    except Exception as exc:
        logger.exception("townsquare client failed")
        client.fail(ClientError(f"internal error: {exc!r}"))


async def _supervise(client: Client) -> None:
    while client.failure is None:
        try:
            connection = await _open(client)
        except AuthenticationFailed:
            raise
        except (
            OSError,
            TimeoutError,
            InvalidHandshake,
            ConnectionClosed,
            Rejected,
            ApiError,
            httpx.TransportError,
        ) as exc:
            if isinstance(exc, InvalidStatus) and _fatal_status(exc.response.status_code):
                raise ProtocolError(f"WebSocket handshake refused: {exc}") from exc
            logger.info("townsquare client: connect failed (%s), retrying", exc)
            await asyncio.sleep(client.backoff.next_delay())
            continue
        started = time.monotonic()
        outcome = await _serve(client, connection)
        logger.info("townsquare client: disconnected (%s %s)", outcome.code, outcome.reason)
        client.reconnects += 1
        fatal = _fatal(outcome)
        if fatal is not None:
            raise fatal
        client.emit(outcome)
        if _auth_trouble(connection):
            # Unreachable just now: the next connect is refused and tries again.
            with contextlib.suppress(ApiError, httpx.TransportError):
                await client.credentials.refresh(connection.token_version)
        if (
            time.monotonic() - started >= STABLE_SECONDS
            or outcome.code == CloseCode.SERVICE_RESTART
        ):
            client.backoff.reset()
        await asyncio.sleep(client.backoff.next_delay())


def _fatal_status(status: int) -> bool:
    # 429 and 5xx (over capacity, restarting) pass; any other refusal will not.
    return 400 <= status < 500 and status != 429


def _fatal(outcome: Disconnected) -> ClientError | None:
    if outcome.code in (CloseCode.UNSUPPORTED_DATA, CloseCode.TOO_BIG):
        return ProtocolError(f"the server refused a frame: {outcome.code} {outcome.reason}")
    return None


def _auth_trouble(connection: Connection) -> bool:
    error = connection.last_error
    return (
        connection.close_code == CloseCode.POLICY_VIOLATION
        and error is not None
        and error.code in AUTH_ERRORS
    )


async def _open(client: Client) -> Connection:
    """A welcomed connection. A refusal of the token is answered by one refresh and
    one more attempt; a second refusal (or no way to refresh) is final."""
    credentials = client.credentials
    for attempt in range(2):
        version = credentials.version
        try:
            connection = await Connection.open(
                client.ws_url, credentials.access_token, open_timeout=client.connect_timeout
            )
        except Rejected as exc:
            if exc.error is None or exc.error.code not in AUTH_ERRORS:
                raise
            if attempt == 1 or not credentials.can_refresh:
                raise AuthenticationFailed(f"the server refused the token: {exc}") from exc
            await credentials.refresh(version)
            continue
        connection.token_version = version
        return connection
    raise AssertionError("unreachable")


async def _serve(client: Client, connection: Connection) -> Disconnected:
    """Run the connection until it ends; say how it ended."""
    assert connection.welcome is not None
    client.welcome = connection.welcome
    client.connection = connection
    client.emit(Connected(connection.welcome, reconnect=client.reconnects > 0))
    client.changes.notify()
    tasks = [
        asyncio.create_task(_read(client, connection)),
        asyncio.create_task(_heartbeat(client, connection)),
        asyncio.create_task(_keep_token(client, connection)),
        asyncio.create_task(_rejoin(client, connection)),
    ]
    try:
        await asyncio.wait(tasks[:3], return_when=asyncio.FIRST_COMPLETED)
    finally:
        client.connection = None
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for feed in client.feeds.values():
            feed.on_disconnected()
        client.changes.notify()
    failures = [r for r in results if isinstance(r, BaseException)]
    if any(isinstance(r, HeartbeatTimeout) for r in failures):
        return Disconnected(None, "heartbeat timeout: the server stopped answering")
    for failure in failures:
        if isinstance(failure, ClientError):
            with contextlib.suppress(Exception):
                await connection.close()
            raise failure
        if not isinstance(failure, (asyncio.CancelledError, ConnectionClosed)):
            raise failure
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), 2)
    reason = connection.close_reason or (connection.bye.reason if connection.bye else "")
    return Disconnected(connection.close_code, reason or "connection lost")


async def _rejoin(client: Client, connection: Connection) -> None:
    with contextlib.suppress(ConnectionClosed):
        for feed in list(client.feeds.values()):
            if feed.left is None and feed.failure is None:
                await client.send_join(feed)


async def _read(client: Client, connection: Connection) -> None:
    while True:
        try:
            frame = await connection.recv()
        except ProtocolError as exc:
            logger.warning("townsquare client: %s", exc)
            continue
        except ConnectionClosed:
            return
        _dispatch(client, connection, frame)


def _dispatch(client: Client, connection: Connection, frame: ServerFrame) -> None:
    match frame:
        case MessageFrame():
            client.outbox.confirm(frame)
            feed = client.feeds.get(frame.room)
            if feed is not None:
                feed.offer(frame)
        case JoinedFrame():
            feed = client.feeds.get(frame.room)
            if feed is not None and feed.left is None:
                feed.on_joined(frame, connection)
                client.changes.notify()
        case PresenceFrame():
            feed = client.feeds.get(frame.room)
            if feed is not None:
                feed.on_presence(frame)
            client.emit(frame)
        case TypingEventFrame():
            client.emit(frame)
        case LeftFrame():
            feed = client.feeds.get(frame.room)
            if feed is not None:
                feed.on_left(frame)
            client.outbox.fail_room(frame.room, RoomLeft(frame.room, frame.reason))
            client.emit(frame)
        case ErrorFrame():
            _on_error(client, frame)
        case ByeFrame():
            pass  # the close that follows says what to do
        case _:
            pass  # welcome (only once), pong: nothing to do beyond the heartbeat


def _on_error(client: Client, error: ErrorFrame) -> None:
    if error.ref is not None and (client.outbox.refused(error) or client.join_refused(error)):
        return
    client.emit(error)
    if error.code is ErrorCode.RATE_LIMITED:
        # The server dropped frames from here on: wait for its bucket to refill, then
        # write every unconfirmed send again.
        client.pacer.pause(RATE_LIMIT_PAUSE)
        client.spawn(_resend_after(client, RATE_LIMIT_PAUSE))
    elif error.code is ErrorCode.TOKEN_EXPIRED:
        client.spawn(_refresh_now(client))
    else:
        logger.warning("townsquare client: server error %s: %s", error.code.value, error.detail)


async def _resend_after(client: Client, delay: float) -> None:
    await asyncio.sleep(delay)
    client.outbox.resend_all()


async def _refresh_now(client: Client) -> None:
    connection = client.connection
    if connection is None:
        return
    try:
        await client.credentials.refresh(connection.token_version)
    except ClientError as exc:
        client.fail(exc)
    except (ApiError, httpx.TransportError) as exc:
        logger.warning("townsquare client: token refresh failed (%s)", exc)


async def _heartbeat(client: Client, connection: Connection) -> None:
    assert connection.welcome is not None
    beat = connection.welcome.heartbeat
    # Ping at half the interval the server asks for, so one late ping is no harm.
    quiet = beat.interval / 2
    tick = max(0.05, min(quiet, beat.timeout / 10, 1.0))
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        if now - connection.last_received > beat.timeout:
            connection.abort()
            raise HeartbeatTimeout()
        if now - connection.last_sent >= quiet:
            with contextlib.suppress(ConnectionClosed):
                await client.write(connection, PingFrame(type="ping"))


async def _keep_token(client: Client, connection: Connection) -> None:
    """Renew the access token before it expires and hand every new one to the open
    connection; a refresh that cannot succeed ends the client."""
    credentials = client.credentials
    while True:
        sent = connection.token_version
        if credentials.version != sent:
            version = credentials.version
            await client.write(
                connection, RefreshFrame(type="refresh", token=credentials.access_token)
            )
            connection.token_version = version
            continue
        due = credentials.refresh_at if credentials.can_refresh else None
        wait = None if due is None else max(0.0, due - time.time())
        changed = asyncio.ensure_future(credentials.changed())
        try:
            await asyncio.wait_for(asyncio.shield(changed), wait)
            continue  # renewed elsewhere: send it
        except TimeoutError:
            pass
        finally:
            changed.cancel()
        try:
            await credentials.refresh(sent)
        except (ApiError, httpx.TransportError) as exc:
            logger.warning("townsquare client: token refresh failed (%s), retrying", exc)
            await asyncio.sleep(client.backoff.next_delay())
