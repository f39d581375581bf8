"""Every frame of the `/ws` protocol: one discriminated union per direction.

These models are the protocol: the endpoint parses with `CLIENT_FRAME`, the server
builds `ServerFrame` members, and `/asyncapi.json` is generated from both unions.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from townsquare.rooms.schemas import MAX_SEQ, ClientId, MessageBody, RoomName
from townsquare.users.schemas import UserPublic

Token = Annotated[str, Field(min_length=1, max_length=4096, description="An access token.")]
Ref = Annotated[
    str | None,
    Field(
        default=None,
        max_length=64,
        description="Any string of the client's; an `error` caused by this frame echoes it.",
    ),
]


class _ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: Ref = None


class AuthFrame(_ClientFrame):
    """Authenticate; must be the first frame when the handshake had no Authorization."""

    type: Literal["auth"] = Field(description="Frame type.")
    token: Token


class JoinFrame(_ClientFrame):
    """Start receiving a room. With `since`, first replay every stored message with a
    greater `seq`, then live ones: no gap, no duplicate."""

    type: Literal["join"] = Field(description="Frame type.")
    room: RoomName
    since: int | None = Field(
        default=None, ge=0, le=MAX_SEQ, description="The last `seq` the client has, if any."
    )


class LeaveFrame(_ClientFrame):
    """Stop receiving a room."""

    type: Literal["leave"] = Field(description="Frame type.")
    room: RoomName


class SendFrame(_ClientFrame):
    """Post a message to a joined room; it is stored, then delivered to the room."""

    type: Literal["send"] = Field(description="Frame type.")
    room: RoomName
    body: MessageBody
    client_id: ClientId | None = None


class TypingFrame(_ClientFrame):
    """Tell a joined room that the user is typing (not stored)."""

    type: Literal["typing"] = Field(description="Frame type.")
    room: RoomName


class PingFrame(_ClientFrame):
    """Keep the connection alive; answered with `pong`."""

    type: Literal["ping"] = Field(description="Frame type.")


class RefreshFrame(_ClientFrame):
    """Replace the connection's access token (before or after it expires)."""

    type: Literal["refresh"] = Field(description="Frame type.")
    token: Token


ClientFrame = Annotated[
    AuthFrame | JoinFrame | LeaveFrame | SendFrame | TypingFrame | PingFrame | RefreshFrame,
    Field(discriminator="type"),
]
CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


class Heartbeat(BaseModel):
    interval: float = Field(
        description="Seconds: the server pings this often, and the client must send a "
        "frame (`ping` when idle) at least this often."
    )
    timeout: float = Field(description="Seconds of client silence after which it is closed.")


class WelcomeFrame(BaseModel):
    """The connection is authenticated."""

    type: Literal["welcome"] = Field(default="welcome", description="Frame type.")
    user: UserPublic = Field(description="Who the connection is signed in as.")
    connection_id: str = Field(description="This connection's id (for logs and support).")
    heartbeat: Heartbeat = Field(description="Heartbeat timing.")


class JoinedFrame(BaseModel):
    """The join took effect; replayed messages (if `since` was given) follow."""

    type: Literal["joined"] = Field(default="joined", description="Frame type.")
    room: str = Field(description="The room's name.")
    seq: int = Field(description="The room's latest `seq` when the join took effect.")
    online: list[UserPublic] = Field(
        description="Users connected to the room now, by id; at most 100 (see `online_count`)."
    )
    online_count: int = Field(description="How many users are connected to the room now.")
    recovered: bool = Field(
        description="Whether every message after `since` follows. False when `since` "
        "asked for more than the server replays: page the gap with "
        "GET /rooms/{name}/messages and join again with a newer `since`."
    )


class LeftReason(StrEnum):
    REMOVED = "removed"  # the user was removed from the room's members
    ROOM_DELETED = "room_deleted"
    ACCESS_REVOKED = "access_revoked"  # made private, a role taken away, account disabled


class LeftFrame(BaseModel):
    """The server took the connection out of a room; nothing more of it follows."""

    type: Literal["left"] = Field(default="left", description="Frame type.")
    room: str = Field(description="The room's name.")
    reason: LeftReason = Field(description="Why the connection is no longer in the room.")


class MessageFrame(BaseModel):
    """A room message, delivered in `seq` order."""

    type: Literal["message"] = Field(default="message", description="Frame type.")
    room: str = Field(description="The room's name.")
    id: int = Field(description="The message's id.")
    seq: int = Field(description="Position in the room: 1, 2, 3, ... with no gap.")
    author: UserPublic | None = Field(description="The sender (null if since deleted).")
    body: str = Field(description="The message text.")
    sent_at: datetime = Field(description="When it was stored (UTC).")
    client_id: str | None = Field(
        default=None, description="The sender's `client_id`, when it gave one."
    )


class PresenceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class PresenceFrame(BaseModel):
    """A user came online in, or left, a room."""

    type: Literal["presence"] = Field(default="presence", description="Frame type.")
    room: str = Field(description="The room's name.")
    user: UserPublic = Field(description="Whose presence changed.")
    state: PresenceState = Field(description="`online` or `offline`.")


class TypingEventFrame(BaseModel):
    """Someone in the room is typing."""

    type: Literal["typing"] = Field(default="typing", description="Frame type.")
    room: str = Field(description="The room's name.")
    user: UserPublic = Field(description="Who is typing.")


class PongFrame(BaseModel):
    """The answer to `ping`."""

    type: Literal["pong"] = Field(default="pong", description="Frame type.")


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    NOT_AUTHENTICATED = "not_authenticated"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 (a code, not a secret)
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    ROOM_NOT_FOUND = "room_not_found"
    NOT_JOINED = "not_joined"
    RATE_LIMITED = "rate_limited"
    EMAIL_NOT_VERIFIED = "email_not_verified"  # REQUIRE_VERIFIED_EMAIL: verify, then join
    INTERNAL = "internal_error"


class ErrorFrame(BaseModel):
    """A frame was refused, or the client must act (`token_expired`: send `refresh`)."""

    type: Literal["error"] = Field(default="error", description="Frame type.")
    code: ErrorCode = Field(description="Machine-readable reason.")
    detail: str = Field(description="Human-readable explanation.")
    ref: str | None = Field(default=None, description="The `ref` of the frame at fault.")


class ByeFrame(BaseModel):
    """The server is about to close the connection."""

    type: Literal["bye"] = Field(default="bye", description="Frame type.")
    reason: str = Field(description="Why; the close code says what to do.")


ServerFrame = Annotated[
    WelcomeFrame
    | JoinedFrame
    | LeftFrame
    | MessageFrame
    | PresenceFrame
    | TypingEventFrame
    | PongFrame
    | ErrorFrame
    | ByeFrame,
    Field(discriminator="type"),
]
SERVER_FRAME: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)


class CloseCode:
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    UNSUPPORTED_DATA = 1003  # a binary frame
    POLICY_VIOLATION = 1008  # no or bad auth, expired token, flood, heartbeat timeout
    TOO_BIG = 1009  # frame over the size limit
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # the server is shutting down: reconnect elsewhere
    TRY_AGAIN_LATER = 1013  # the client did not read fast enough
