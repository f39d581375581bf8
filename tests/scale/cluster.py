"""Several real `townsquare serve` processes sharing PostgreSQL and Redis, and a
member's socket (`townsquare.client.Connection`) that records every frame it
receives in the background."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_SECRET
from tests.rooms.wsclient import Member, history, make_room, signup
from tests.support.server import ServerProcess, free_port, wait_until_healthy
from townsquare.client import Api, ApiError, Connection
from townsquare.rooms.protocol import (
    JoinedFrame,
    JoinFrame,
    MessageFrame,
    PingFrame,
    PresenceFrame,
    SendFrame,
    ServerFrame,
    WelcomeFrame,
)

F = TypeVar("F", bound=BaseModel)

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


async def signup_many(
    http: httpx.AsyncClient, count: int, name: str, *, at_once: int = 20
) -> list[Member]:
    """`count` accounts, `at_once` sign-ups at a time: each has its own HTTP client,
    and hundreds at once would wait past the server's database pool timeout (503)."""
    gate = asyncio.Semaphore(at_once)

    async def one(index: int) -> Member:
        async with gate:
            return await signup(http, f"{name}{index}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@dataclass
class Listener:
    """A member's socket (`townsquare.client.Connection`) whose frames a background
    task reads into `frames`, so a test can send, wait and assert while messages keep
    arriving. Every wait wakes on the next frame, not on a timer."""

    member: Member
    server: ServerProcess
    connection: Connection
    frames: list[ServerFrame] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    pinger: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(
        cls, server: ServerProcess, member: Member, *, keepalive: float | None = None
    ) -> Listener:
        """Signed in (`welcome` received). `keepalive`: send `ping` this often (servers
        with a short heartbeat timeout)."""
        connection = await Connection.open(server.base_url, member.token)
        listener = cls(member, server, connection)
        listener.task = asyncio.create_task(listener._read())
        if keepalive is not None:
            listener.pinger = asyncio.create_task(listener._ping(keepalive))
        return listener

    @property
    def welcome(self) -> WelcomeFrame:
        assert self.connection.welcome is not None
        return self.connection.welcome

    async def _ping(self, every: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(every)
                await self.connection.send(PingFrame(type="ping"))

    async def _read(self) -> None:
        # A frame the protocol's models cannot read ends the reader (and so fails the
        # test's next wait), as a closed socket does.
        try:
            while True:
                self.frames.append(await self.connection.recv())
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self._arrived.set()

    async def send(self, frame: BaseModel) -> None:
        await self.connection.send(frame)

    async def say(self, room: str, body: str, *, client_id: str | None = None) -> None:
        await self.send(SendFrame(type="send", room=room, body=body, client_id=client_id))

    def of(self, kind: type[F], **match: Any) -> list[F]:
        return [
            f
            for f in self.frames
            if isinstance(f, kind) and all(getattr(f, k) == v for k, v in match.items())
        ]

    def messages(self, room: str) -> list[MessageFrame]:
        return self.of(MessageFrame, room=room)

    def seqs(self, room: str) -> list[int]:
        return [f.seq for f in self.messages(room)]

    def last_seq(self, room: str) -> int:
        seqs = self.seqs(room)
        return seqs[-1] if seqs else 0

    async def until(self, check: Callable[[], bool], within: float = WAIT) -> bool:
        """Whether `check()` holds within `within` seconds, tested again on each frame
        that arrives; False at once if the socket closes first."""
        try:
            async with asyncio.timeout(within):
                while not check():
                    if self.is_closed:
                        return False
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            return False
        return True

    async def wait_for(self, kind: type[F], within: float = WAIT, **match: Any) -> F:
        """The latest frame of `kind` with the given fields, once there is one."""
        if await self.until(lambda: bool(self.of(kind, **match)), within):
            return self.of(kind, **match)[-1]
        raise AssertionError(
            f"no {kind.__name__} {match} for {self.member.name}: {self.frames[-5:]}"
        )

    async def join(self, room: str, since: int | None = None) -> JoinedFrame:
        before = len(self.of(JoinedFrame, room=room))
        await self.send(JoinFrame(type="join", room=room, since=since))
        joined = await self.until(lambda: len(self.of(JoinedFrame, room=room)) > before)
        assert joined, f"no joined for {self.member.name}"
        return self.of(JoinedFrame, room=room)[-1]

    async def has_seq(self, room: str, seq: int, within: float = WAIT) -> bool:
        return await self.until(lambda: self.last_seq(room) >= seq, within)

    @property
    def is_closed(self) -> bool:
        return self.task is not None and self.task.done()

    @property
    def close_code(self) -> int | None:
        return self.connection.close_code

    async def close(self) -> None:
        if self.pinger is not None:
            self.pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pinger
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), 3)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def close_all(listeners: list[Listener]) -> None:
    await asyncio.gather(*(listener.close() for listener in listeners))


def online_ids(joined: JoinedFrame) -> set[int]:
    return {user.id for user in joined.online}


@dataclass
class Traffic:
    """Posts over REST, alternating between the instances, until stopped; records
    the seq of each stored message and which instance took it."""

    room: str
    targets: list[tuple[httpx.AsyncClient, Member]]
    stored: list[tuple[int, int]] = field(default_factory=list)  # (seq, target index)
    failures: list[str] = field(default_factory=list)  # answered, but with an error
    unreachable: list[str] = field(default_factory=list)  # no answer at all
    skip: set[int] = field(default_factory=set)  # target indexes to stop posting to
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            apis = [
                await stack.enter_async_context(
                    Api(str(http.base_url), token=member.token, timeout=WAIT)
                )
                for http, member in self.targets
            ]
            number = 0
            while not self._stop.is_set():
                index = number % len(apis)
                if index in self.skip:
                    number += 1
                    continue
                try:
                    message = await apis[index].post_message(self.room, f"traffic-{number}")
                except httpx.TransportError as exc:
                    self.unreachable.append(f"{index}: {exc!r}")
                    await asyncio.sleep(0.01)
                    continue
                except ApiError as exc:
                    self.failures.append(str(exc))
                else:
                    self.stored.append((message.seq, index))
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
        await listener.say(room, body, client_id=body)
        bodies.append(body)
        if i % 10 == 9:
            await asyncio.sleep(0)  # let the other senders interleave
    return bodies


async def _send_over_rest(
    http: httpx.AsyncClient, member: Member, room: str, tag: str
) -> list[str]:
    bodies = []
    async with Api(str(http.base_url), token=member.token, timeout=WAIT) as api:
        for i in range(MESSAGES_PER_SENDER):
            body = f"{tag}-{i}"
            await api.post_message(room, body)
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
                await listener.wait_for(PresenceFrame, user=member.public, state="online")

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
        async with Api(str(http_b.base_url), token=members[5].token) as api:
            last = await api.post_message(room, "the end")
        total += 1
        assert last.seq == total
        for listener in listeners:
            assert await listener.has_seq(room, total, within=30), (
                f"{listener.member.name} stopped at {listener.last_seq(room)} of {total}"
            )

        stored = await history(http_a, room, members[0])
        assert [m.seq for m in stored] == list(range(1, total + 1))
        assert {m.body for m in stored} == {*sent, "the end"}
        expected = [(m.seq, m.body, m.author) for m in stored]
        for listener in listeners:
            got = [(m.seq, m.body, m.author) for m in listener.messages(room)]
            assert got == expected, f"{listener.member.name} on {listener.server.base_url}"
    finally:
        await close_all(listeners)
