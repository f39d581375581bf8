"""A small test client over a real WebSocket library, and account helpers for a
real server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.server import ServerProcess

Frame = dict[str, Any]
TIMEOUT = 10.0


@dataclass
class Member:
    id: int
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def signup(http: httpx.AsyncClient, name: str = "User") -> Member:
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    created = await http.post(
        "/users", json={"name": name, "email": email, "password": "long enough pw"}
    )
    assert created.status_code == 201, created.text
    token = await http.post("/auth/token", data={"username": email, "password": "long enough pw"})
    assert token.status_code == 200, token.text
    return Member(created.json()["id"], name, token.json()["access_token"])


async def make_room(http: httpx.AsyncClient, owner: Member, *, private: bool = False) -> str:
    name = f"r-{uuid.uuid4().hex[:10]}"
    response = await http.post(
        "/rooms", json={"name": name, "private": private}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return name


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(
        cls, server: ServerProcess, member: Member | None = None, **options: Any
    ) -> Client:
        headers = member.headers if member is not None else None
        ws = await connect(
            f"{server.ws_url}/ws",
            additional_headers=headers,
            open_timeout=TIMEOUT,
            close_timeout=2,
            **options,
        )
        client = cls(ws)
        if member is not None:
            welcome = await client.expect("welcome")
            assert welcome["user"]["id"] == member.id
        return client

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    async def recv(self, wait: float = TIMEOUT) -> Frame:
        raw = await asyncio.wait_for(self.ws.recv(), wait)
        frame: Frame = json.loads(raw)
        return frame

    async def expect(self, kind: str, wait: float = TIMEOUT, **match: Any) -> Frame:
        """The next frame of `kind` (with the given fields), skipping others."""
        async with asyncio.timeout(wait):
            while True:
                frame = await self.recv(wait)
                if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                    return frame

    async def join(self, room: str, since: int | None = None) -> Frame:
        frame: Frame = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        await self.ws.send(json.dumps(frame))
        return await self.expect("joined", room=room)

    async def messages(self, room: str, count: int, wait: float = TIMEOUT) -> list[Frame]:
        found: list[Frame] = []
        async with asyncio.timeout(wait):
            while len(found) < count:
                frame = await self.recv(wait)
                if frame["type"] == "message" and frame["room"] == room:
                    found.append(frame)
        return found

    async def messages_until(self, room: str, seq: int, wait: float = TIMEOUT) -> list[Frame]:
        found: list[Frame] = []
        async with asyncio.timeout(wait):
            while not found or found[-1]["seq"] < seq:
                frame = await self.recv(wait)
                if frame["type"] == "message" and frame["room"] == room:
                    found.append(frame)
        return found

    async def closed(self, wait: float = TIMEOUT) -> tuple[int | None, list[Frame]]:
        """Read until the server closes; the close code and the frames read."""
        frames: list[Frame] = []
        try:
            async with asyncio.timeout(wait):
                async for raw in self.ws:
                    frames.append(json.loads(raw))
        except ConnectionClosed:
            pass
        return self.ws.close_code, frames

    async def close(self) -> None:
        await self.ws.close()


def seqs(frames: Iterable[Frame]) -> list[int]:
    return [int(frame["seq"]) for frame in frames]
