"""Several real `townsquare serve` processes sharing PostgreSQL and Redis, and a
WebSocket member that records every frame it receives in the background."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_SECRET
from tests.rooms.wsclient import Frame, Member, make_room
from tests.support.server import ServerProcess, free_port, wait_until_healthy

WAIT = 20.0  # seconds: a bound against hangs, never a measurement

BASE_ENV = {
    "ENV": "test",
    "SECRET_KEY": TEST_SECRET,
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "64",
    "LOG_LEVEL": "WARNING",
    "RATE_LIMIT_ENABLED": "false",
    # Many senders per connection and long bursts: the limits are not under test here.
    "WS_MESSAGES_PER_SECOND": "5000",
    "WS_SEND_QUEUE_SIZE": "4000",
}


@contextmanager
def run_instances(
    env: Mapping[str, str],
    directory: Path,
    count: int = 2,
    *,
    names: str = "ABCD",
    command: Sequence[str] | None = None,
    base_env: Mapping[str, str] = BASE_ENV,
    cwd: Path | None = None,
    timeout: float = 30,
) -> Iterator[list[ServerProcess]]:
    """Start `count` servers at once (each on its own port, one log each; `townsquare
    serve` unless `command`), wait until all are healthy, and stop every one still
    running on exit (by its PID)."""
    processes: list[tuple[subprocess.Popen[bytes], int, Path]] = []
    argv = list(command or [sys.executable, "-m", "townsquare.cli", "serve"])
    try:
        for index in range(count):
            port = free_port()
            log_path = directory / f"instance-{names[index]}.log"
            full_env = {**os.environ, **base_env, "HOST": "127.0.0.1", "PORT": str(port), **env}
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    argv, env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
                )
            processes.append((process, port, log_path))
        servers = []
        for process, port, log_path in processes:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, process, timeout=timeout)
            servers.append(ServerProcess(process, base_url, f"ws://127.0.0.1:{port}", log_path))
        yield servers
    finally:
        for process, _, _ in processes:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def signup_many(http: httpx.AsyncClient, count: int, name: str) -> list[Member]:
    from tests.rooms.wsclient import signup

    return list(await asyncio.gather(*(signup(http, f"{name}{i}") for i in range(count))))


@dataclass
class Listener:
    """A member's WebSocket whose frames are read into `frames` by a background task,
    so a test can send, poll and assert while messages keep arriving."""

    member: Member
    server: ServerProcess
    ws: ClientConnection
    welcome: Frame
    frames: list[Frame] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    pinger: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, server: ServerProcess, member: Member, *, keepalive: float | None = None
    ) -> Listener:
        """`keepalive`: send `ping` this often (servers with a short heartbeat timeout)."""
        ws = await connect(
            f"{server.ws_url}/ws",
            additional_headers=member.headers,
            open_timeout=10,
            close_timeout=2,
            max_queue=None,
        )
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        listener = cls(member, server, ws, welcome)
        listener.task = asyncio.create_task(listener._read())
        if keepalive is not None:
            listener.pinger = asyncio.create_task(listener._ping(keepalive))
        return listener

    async def _ping(self, every: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(every)
                await self.ws.send('{"type":"ping"}')

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                self.frames.append(json.loads(raw))

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    def of(self, kind: str, **match: Any) -> list[Frame]:
        return [
            f
            for f in self.frames
            if f["type"] == kind and all(f.get(k) == v for k, v in match.items())
        ]

    def messages(self, room: str) -> list[Frame]:
        return self.of("message", room=room)

    def seqs(self, room: str) -> list[int]:
        return [int(f["seq"]) for f in self.messages(room)]

    def last_seq(self, room: str) -> int:
        seqs = self.seqs(room)
        return seqs[-1] if seqs else 0

    async def wait_for(self, kind: str, within: float = WAIT, **match: Any) -> Frame:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.of(kind, **match)
            if found:
                return found[-1]
            if self.is_closed:
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind} {match} for {self.member.name}: {self.frames[-5:]}")

    async def join(self, room: str, since: int | None = None) -> Frame:
        before = len(self.of("joined", room=room))
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        await self.ws.send(json.dumps(frame))
        deadline = time.monotonic() + WAIT
        while len(self.of("joined", room=room)) == before:
            assert time.monotonic() < deadline, f"no joined for {self.member.name}"
            await asyncio.sleep(0.02)
        return self.of("joined", room=room)[-1]

    async def has_seq(self, room: str, seq: int, within: float = WAIT) -> bool:
        deadline = time.monotonic() + within
        while self.last_seq(room) < seq:
            if time.monotonic() > deadline or self.is_closed:
                return False
            await asyncio.sleep(0.02)
        return True

    @property
    def is_closed(self) -> bool:
        return self.task is not None and self.task.done()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def close(self) -> None:
        if self.pinger is not None:
            self.pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pinger
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 3)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def close_all(listeners: list[Listener]) -> None:
    await asyncio.gather(*(listener.close() for listener in listeners))


async def history(http: httpx.AsyncClient, room: str, member: Member) -> list[Frame]:
    """Every stored message of `room`, oldest first, paged through the REST API."""
    found: list[Frame] = []
    while True:
        page = await http.get(
            f"/rooms/{room}/messages",
            params={"after_seq": found[-1]["seq"] if found else 0, "limit": 200},
            headers=member.headers,
        )
        assert page.status_code == 200, page.text
        found.extend(page.json())
        if len(page.json()) < 200:
            return found


def online_ids(joined: Frame) -> set[int]:
    return {int(user["id"]) for user in joined["online"]}


@dataclass
class Traffic:
    """Posts over REST, alternating between the instances, until stopped; records
    the seq of each stored message and which instance took it."""

    room: str
    targets: list[tuple[httpx.AsyncClient, Member]]
    stored: list[tuple[int, int]] = field(default_factory=list)  # (seq, target index)
    failures: list[str] = field(default_factory=list)  # answered, but not 201
    unreachable: list[str] = field(default_factory=list)  # no answer at all
    skip: set[int] = field(default_factory=set)  # target indexes to stop posting to
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            index = number % len(self.targets)
            if index in self.skip:
                number += 1
                continue
            http, member = self.targets[index]
            try:
                response = await http.post(
                    f"/rooms/{self.room}/messages",
                    json={"body": f"traffic-{number}"},
                    headers=member.headers,
                )
            except httpx.TransportError as exc:
                self.unreachable.append(f"{index}: {exc!r}")
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 201:
                self.stored.append((response.json()["seq"], index))
            else:
                self.failures.append(f"{response.status_code} {response.text}")
            number += 1
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, WAIT)

    def last_seq(self, index: int | None = None) -> int:
        seqs = [seq for seq, target in self.stored if index is None or target == index]
        return max(seqs, default=0)


SENDERS_PER_SIDE = 4  # two over /ws, two over REST
MESSAGES_PER_SENDER = 50


async def _send_over_ws(listener: Listener, room: str, tag: str) -> list[str]:
    bodies = []
    for i in range(MESSAGES_PER_SENDER):
        body = f"{tag}-{i}"
        await listener.send(type="send", room=room, body=body, client_id=body)
        bodies.append(body)
        if i % 10 == 9:
            await asyncio.sleep(0)  # let the other senders interleave
    return bodies


async def _send_over_rest(
    http: httpx.AsyncClient, member: Member, room: str, tag: str
) -> list[str]:
    bodies = []
    for i in range(MESSAGES_PER_SENDER):
        body = f"{tag}-{i}"
        response = await http.post(
            f"/rooms/{room}/messages", json={"body": body}, headers=member.headers
        )
        assert response.status_code == 201, response.text
        bodies.append(body)
    return bodies


async def check_exactly_once(
    instances: list[ServerProcess], https: list[httpx.AsyncClient]
) -> None:
    """Members on two instances (three each) and senders on both, over /ws and REST at
    once: every member gets every message exactly once, in seq order, and presence
    spans the instances."""
    a, b = instances
    http_a, http_b = https
    members = await signup_many(http_a, 6, "Member")
    room = await make_room(http_a, members[0])
    listeners: list[Listener] = []
    try:
        on_a = [await Listener.open(a, m) for m in members[:3]]
        listeners += on_a
        for listener in on_a:
            await listener.join(room)
        on_b = [await Listener.open(b, m) for m in members[3:]]
        listeners += on_b
        joined_b = [await listener.join(room) for listener in on_b]

        # Presence spans the instances: B's `joined` lists A's users, and A's members
        # were told (over the broker) when B's came online.
        assert {m.id for m in members[:3]} <= online_ids(joined_b[-1])
        assert online_ids(joined_b[-1]) == {m.id for m in members}
        for listener in on_a:
            for member in members[3:]:
                await listener.wait_for(
                    "presence", user={"id": member.id, "name": member.name}, state="online"
                )

        sends = []
        for side, http, local in (("A", http_a, on_a), ("B", http_b, on_b)):
            sends += [
                _send_over_ws(local[0], room, f"{side}-ws0"),
                _send_over_ws(local[1], room, f"{side}-ws1"),
                _send_over_rest(http, local[1].member, room, f"{side}-rest0"),
                _send_over_rest(http, local[2].member, room, f"{side}-rest1"),
            ]
        sent = [body for bodies in await asyncio.gather(*sends) for body in bodies]
        total = 2 * SENDERS_PER_SIDE * MESSAGES_PER_SENDER
        assert len(set(sent)) == total

        # A last message after all the others: anything doubled or late would be in
        # front of it.
        last = await http_b.post(
            f"/rooms/{room}/messages", json={"body": "the end"}, headers=members[5].headers
        )
        assert last.status_code == 201, last.text
        total += 1
        assert last.json()["seq"] == total
        for listener in listeners:
            assert await listener.has_seq(room, total, within=30), (
                f"{listener.member.name} stopped at {listener.last_seq(room)} of {total}"
            )

        stored = await history(http_a, room, members[0])
        assert [m["seq"] for m in stored] == list(range(1, total + 1))
        assert {m["body"] for m in stored} == {*sent, "the end"}
        expected = [(m["seq"], m["body"], m["author"]["id"]) for m in stored]
        for listener in listeners:
            got = [(m["seq"], m["body"], m["author"]["id"]) for m in listener.messages(room)]
            assert got == expected, f"{listener.member.name} on {listener.server.base_url}"
    finally:
        await close_all(listeners)
