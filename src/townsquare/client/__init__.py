"""A typed Python client for townsquare: the `/ws` protocol with the server's own
Pydantic models, reconnects hidden, every room message delivered once and in order.

    from townsquare.client import Client, login

    tokens = await login(url, email, password)
    async with Client(url, tokens=tokens) as client:
        await client.join("general")
        await client.send("general", "hello")
        async for message in client.messages("general"):
            print(message.seq, message.body)

`Client` is the high-level client; `Connection` is one raw socket (typed frames,
no reconnects) for tools and protocol tests; `Api` is the REST side. See
docs/client.md.
"""

from townsquare.client.api import Api, login
from townsquare.client.backoff import Backoff
from townsquare.client.client import Client
from townsquare.client.connection import Connection, Rejected, ws_url
from townsquare.client.credentials import Credentials, TokenProvider
from townsquare.client.errors import (
    ApiError,
    AuthenticationFailed,
    ClientClosed,
    ClientError,
    ConnectFailed,
    NotJoined,
    ProtocolError,
    RoomLeft,
    RoomNotFound,
    SendRejected,
    SendTimeout,
)
from townsquare.client.events import Connected, Disconnected, Event
from townsquare.rooms.protocol import (
    ErrorFrame,
    JoinedFrame,
    LeftFrame,
    MessageFrame,
    PresenceFrame,
    TypingEventFrame,
    WelcomeFrame,
)

__all__ = [
    "Api",
    "ApiError",
    "AuthenticationFailed",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "Connected",
    "Connection",
    "Credentials",
    "Disconnected",
    "ErrorFrame",
    "Event",
    "JoinedFrame",
    "LeftFrame",
    "MessageFrame",
    "NotJoined",
    "PresenceFrame",
    "ProtocolError",
    "Rejected",
    "RoomLeft",
    "RoomNotFound",
    "SendRejected",
    "SendTimeout",
    "TokenProvider",
    "TypingEventFrame",
    "WelcomeFrame",
    "login",
    "ws_url",
]
