"""What the client raises. Every error is a `ClientError`."""

from __future__ import annotations

from townsquare.rooms.protocol import ErrorFrame, LeftReason


class ClientError(Exception):
    """Base of every error the client raises."""


class ApiError(ClientError):
    """The REST API answered with an error status."""

    def __init__(self, status: int, detail: object, request_id: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.request_id = request_id


class AuthenticationFailed(ClientError):
    """The server refused the credentials and no new access token could be had
    (no refresh token, or the refresh token was refused too). The client stops."""


class ProtocolError(ClientError):
    """The server sent something this client cannot read, or refused a frame this
    client should never have sent (a close with 1003 or 1009). The client stops."""


class ConnectFailed(ClientError):
    """The first connection could not be made within the connect timeout."""


class ClientClosed(ClientError):
    """The client was closed (by `aclose()` or leaving its `async with`)."""


class NotJoined(ClientError):
    """A room operation before `join(room)`, or after `leave(room)`."""

    def __init__(self, room: str) -> None:
        super().__init__(f"join room {room!r} first")
        self.room = room


class RoomNotFound(ClientError):
    """The room does not exist, or is private and the user is not a member."""

    def __init__(self, room: str) -> None:
        super().__init__(f"room {room!r} not found")
        self.room = room


class RoomLeft(ClientError):
    """The server took the user out of the room (`left {room, reason}`): nothing more
    of it is delivered. Messages delivered before it are not affected."""

    def __init__(self, room: str, reason: LeftReason) -> None:
        super().__init__(f"left room {room!r}: {reason.value}")
        self.room = room
        self.reason = reason


class SendRejected(ClientError):
    """The server refused a `send` for good (an `error` naming it)."""

    def __init__(self, error: ErrorFrame) -> None:
        super().__init__(f"{error.code.value}: {error.detail}")
        self.error = error


class SendTimeout(ClientError, TimeoutError):
    """A `send` was not confirmed within its timeout. It may still be stored; sending
    again with the same `client_id` is safe (stored at most once)."""

    def __init__(self, room: str, client_id: str) -> None:
        super().__init__(f"send {client_id!r} to {room!r} not confirmed in time")
        self.room = room
        self.client_id = client_id
