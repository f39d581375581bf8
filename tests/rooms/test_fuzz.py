"""WebSocket fuzzing: random and malformed frames of every kind, while healthy clients
chat in the same room. Every fuzzed connection ends well (an answer, or a close
with the code the protocol names) and the healthy clients lose nothing.

Deterministic (hypothesis' derandomize) and bounded; `make fuzz` runs many more
examples (WS_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_SECRET
from tests.rooms.wsclient import Member, Socket, connect, signup
from tests.support.server import ServerProcess, run_server
from townsquare.client import Api
from townsquare.rooms.protocol import ErrorCode, ErrorFrame, PingFrame, PongFrame

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("WS_FUZZ_EXAMPLES", "60"))
ROOM = "fuzz-room"
MAX_FRAME = 16 * 1024
# What a fuzzed connection may end with: binary frame, policy (bad token, bad auth),
# too big. Never 1011 (a server fault) nor 1006 (no close frame).
ALLOWED_CLOSES = {1003, 1008, 1009}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    env = {
        "ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'db.sqlite'}",
        "LOG_LEVEL": "WARNING",
        "WS_MESSAGES_PER_SECOND": "5000",
    }
    with run_server(env, folder / "server.log") as process:
        yield process


@dataclass
class Scene:
    server: ServerProcess
    sender: Socket
    receiver: Socket
    fuzzer: Member
    last_seq: dict[str, int] = field(default_factory=lambda: {"sender": 0, "receiver": 0})
    sent: int = 0

    async def chat_survives(self) -> None:
        """The sender posts one more message; both healthy clients get it, and every
        message before it, with no gap in `seq`."""
        self.sent += 1
        marker = f"healthy message {self.sent}"
        await self.sender.say(ROOM, marker)
        for name, client in (("sender", self.sender), ("receiver", self.receiver)):
            while True:
                [frame] = await client.messages(ROOM, 1)
                expected = self.last_seq[name] + 1
                assert self.last_seq[name] == 0 or frame.seq == expected, (name, frame)
                self.last_seq[name] = frame.seq
                if frame.body == marker:
                    break


@pytest.fixture(scope="module")
async def scene(server: ServerProcess) -> AsyncIterator[Scene]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        owner = await signup(http, "Owner")
        async with Api(server.base_url, token=owner.token) as api:
            await api.create_room(ROOM)
        sender = await connect(server, owner)
        receiver = await connect(server, await signup(http, "Receiver"))
        await sender.join(ROOM)
        await receiver.join(ROOM)
        yield Scene(server, sender, receiver, await signup(http, "Fuzzer"))
        await sender.close()
        await receiver.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
rooms = st.sampled_from([ROOM, "no-such-room", "BAD NAME", ""]) | st.text(max_size=70)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "room": rooms | json_values,
    "body": st.text(max_size=300)
    | st.sampled_from(["", "   ", "a\x00b", "x" * 4001])
    | json_values,
    "since": st.integers(min_value=-5, max_value=2**40) | json_values,
    "token": st.text(max_size=60) | json_values,
    "client_id": st.text(max_size=70) | json_values,
    "ref": st.text(max_size=80) | json_values,
    "extra": json_values,
}
frame_types = st.sampled_from(
    ["auth", "join", "leave", "send", "typing", "ping", "refresh", "welcome", "dance"]
) | st.text(max_size=10)
structured = st.fixed_dictionaries({"type": frame_types}, optional=FIELDS).map(json.dumps)


@dataclass(frozen=True)
class Frame:
    kind: str  # text | binary | fragments | ping
    data: Any


frames = st.one_of(
    # Frames shaped like the protocol's, most often: they reach the handlers.
    structured.map(lambda text: Frame("text", text)),
    structured.map(lambda text: Frame("text", text)),
    structured.map(lambda text: Frame("text", text)),
    json_values.map(lambda value: Frame("text", json.dumps(value))),
    st.text(max_size=200).map(lambda text: Frame("text", text)),
    st.just(Frame("text", "x" * (MAX_FRAME + 1))),
    st.binary(max_size=64).map(lambda data: Frame("binary", data)),
    st.lists(st.text(max_size=20), min_size=2, max_size=4).map(lambda p: Frame("fragments", p)),
    st.binary(max_size=16).map(lambda data: Frame("ping", data)),
)


def _text(**fields: Any) -> Frame:
    return Frame("text", json.dumps(fields))


async def _send(client: Socket, frame: Frame, index: int) -> None:
    if frame.kind == "ping":
        # Raw socket: a WebSocket-level ping, which townsquare.client never sends
        # (websockets refuses two pings with one payload in flight).
        await client.ws.ping(frame.data + b"%d" % index)
    elif frame.kind == "fragments":
        # Raw socket: one message in several frames, which townsquare.client never sends.
        await client.ws.send(frame.data)
    else:
        await client.send(frame.data)  # raw text or bytes, sent as they are


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(sequence=st.lists(frames, min_size=1, max_size=4))
# Every frame type at least once, in a joined room, whatever the generator draws.
@example(sequence=[_text(type="join", room=ROOM), _text(type="typing", room=ROOM)])
@example(sequence=[_text(type="join", room=ROOM, since=0), _text(type="leave", room=ROOM)])
@example(sequence=[_text(type="join", room=ROOM), _text(type="send", room=ROOM, body="a\x00")])
@example(sequence=[_text(type="send", room=ROOM, body="hi", client_id="c1", ref="r")])
@example(sequence=[_text(type="refresh", token="not-a-token")])
@example(sequence=[_text(type="auth", token="x" * 5000)])
@example(sequence=[_text(type="ping", extra=1), Frame("binary", b"\x00")])
async def test_fuzzed_frames_end_well_and_healthy_clients_lose_nothing(
    scene: Scene, sequence: list[Frame]
) -> None:
    fuzzed = await connect(scene.server, scene.fuzzer)
    try:
        for index, frame in enumerate(sequence):
            await _send(fuzzed, frame, index)
        await fuzzed.send(PingFrame(type="ping"))
        while True:
            # Every answer is a frame of the protocol (`recv` parses it with its model).
            reply = await fuzzed.recv(10)
            assert not (isinstance(reply, ErrorFrame) and reply.code == ErrorCode.INTERNAL), reply
            if isinstance(reply, PongFrame):
                break
    except ConnectionClosed:
        code, _ = await fuzzed.closed()
        assert code in ALLOWED_CLOSES, (code, sequence)
    finally:
        await fuzzed.close()
    await scene.chat_survives()
