"""The end-to-end tests' client: `townsquare.client` itself, so the tests speak the
protocol through the server's own Pydantic models.

Accounts and rooms are made through `Api`; a socket is a `Socket`, the library's raw
`Connection` (typed frames, no reconnects) with the waits these tests repeat. A test
that must send what the library never would (bad JSON, binary or oversized frames)
sends raw text or bytes with `Connection.send`; only odd handshakes, WebSocket-level
pings and fragmented frames need the `websockets` socket underneath (`Socket(ws)`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from websockets.exceptions import ConnectionClosed

from tests.support.server import ServerProcess
from townsquare.client import Api, Connection
from townsquare.rooms.protocol import (
    JoinedFrame,
    JoinFrame,
    MessageFrame,
    PingFrame,
    PongFrame,
    SendFrame,
    ServerFrame,
)
from townsquare.rooms.schemas import MessageRead
from townsquare.users.schemas import UserPublic

TIMEOUT = 10.0
PASSWORD = "long enough pw"


@dataclass
class Member:
    id: int
    name: str
    token: str
    refresh_token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def public(self) -> UserPublic:
        """How other users see this member in `presence`, `typing` and `joined`."""
        return UserPublic(id=self.id, name=self.name)


async def signup(http: httpx.AsyncClient, name: str = "User") -> Member:
    """A new account on the server `http` talks to, signed in."""
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    async with Api(str(http.base_url)) as api:
        user = await api.signup(name=name, email=email, password=PASSWORD)
        tokens = await api.login(email, PASSWORD)
    return Member(user.id, name, tokens.access_token, tokens.refresh_token)


async def make_room(http: httpx.AsyncClient, owner: Member, *, private: bool = False) -> str:
    async with Api(str(http.base_url), token=owner.token) as api:
        room = await api.create_room(f"r-{uuid.uuid4().hex[:10]}", private=private)
    return room.name


async def history(http: httpx.AsyncClient, room: str, member: Member) -> list[MessageRead]:
    """Every stored message of `room`, oldest first, paged through the REST API."""
    found: list[MessageRead] = []
    async with Api(str(http.base_url), token=member.token) as api:
        while True:
            page = await api.history(room, after_seq=found[-1].seq if found else 0, limit=200)
            found += page
            if len(page) < 200:
                return found


class Socket(Connection):
    """One `/ws` connection of the client library, and the waits the tests repeat."""

    async def join(self, room: str, since: int | None = None) -> JoinedFrame:
        await self.send(JoinFrame(type="join", room=room, since=since))
        return await self.expect(JoinedFrame, within=TIMEOUT, room=room)

    async def say(
        self, room: str, body: str, *, client_id: str | None = None, ref: str | None = None
    ) -> None:
        await self.send(SendFrame(type="send", room=room, body=body, client_id=client_id, ref=ref))

    async def ping(self) -> PongFrame:
        """A `ping`, and the next frame, which must be its `pong`."""
        await self.send(PingFrame(type="ping"))
        frame = await self.recv(TIMEOUT)
        assert isinstance(frame, PongFrame), frame
        return frame

    async def messages(self, room: str, count: int, within: float = TIMEOUT) -> list[MessageFrame]:
        """The next `count` messages of `room`, skipping other frames."""
        found: list[MessageFrame] = []
        while len(found) < count:
            found.append(await self.expect(MessageFrame, within=within, room=room))
        return found

    async def messages_until(
        self, room: str, seq: int, within: float = TIMEOUT
    ) -> list[MessageFrame]:
        """The messages of `room` up to and including `seq`, skipping other frames."""
        found: list[MessageFrame] = []
        while not found or found[-1].seq < seq:
            found.append(await self.expect(MessageFrame, within=within, room=room))
        return found

    async def closed(self, within: float = TIMEOUT) -> tuple[int | None, list[ServerFrame]]:
        """Read until the server closes; the close code and the frames read."""
        frames: list[ServerFrame] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    frames.append(await self.recv())
        except ConnectionClosed:
            pass
        return self.close_code, frames


async def connect(
    server: ServerProcess, member: Member | None = None, *, within: float = TIMEOUT
) -> Socket:
    """A socket to `server`. With `member` it authenticates on the handshake and is
    returned once welcomed; without, the test authenticates it (or not) itself."""
    socket = await Socket.connect(
        server.base_url, token=member.token if member else None, open_timeout=within
    )
    assert isinstance(socket, Socket)
    if member is not None:
        try:
            welcome = await socket.wait_welcome(within)
        except BaseException:
            socket.abort()
            raise
        assert welcome.user.id == member.id
    return socket


def seqs(frames: Iterable[MessageFrame | MessageRead]) -> list[int]:
    return [frame.seq for frame in frames]
