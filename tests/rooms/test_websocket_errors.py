"""End to end: every class of bad frame, refused handshakes and timeouts, each with
the error or close code docs/rooms.md names, and no effect on other connections."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect as raw_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import TEST_SECRET, make_settings
from tests.rooms.wsclient import Member, Socket, connect, make_room, signup
from tests.support.server import ServerProcess
from townsquare.auth.tokens import TokenCodec
from townsquare.client import Api
from townsquare.platform.database import utcnow
from townsquare.rooms.protocol import (
    AuthFrame,
    ByeFrame,
    ErrorCode,
    ErrorFrame,
    JoinFrame,
    PingFrame,
    PongFrame,
    PresenceFrame,
    RefreshFrame,
    ServerFrame,
    TypingFrame,
    WelcomeFrame,
)

pytestmark = pytest.mark.e2e


@dataclass
class Scene:
    """A room with a bystander in it and a second member to send from."""

    server: ServerProcess
    http: httpx.AsyncClient
    room: str
    owner: Member
    bystander: Socket

    async def bystander_still_receives(self) -> None:
        async with Api(self.server.base_url, token=self.owner.token) as api:
            posted = await api.post_message(self.room, "still here")
        [frame] = await self.bystander.messages(self.room, 1)
        assert frame.seq == posted.seq


@pytest.fixture
async def scene(server: ServerProcess, http: httpx.AsyncClient) -> AsyncIterator[Scene]:
    owner = await signup(http, "Owner")
    room = await make_room(http, owner)
    bystander = await connect(server, await signup(http, "Bystander"))
    await bystander.join(room)
    yield Scene(server, http, room, owner, bystander)
    await bystander.close()


ERRORS = [
    pytest.param("hello", "invalid_json", id="not-json"),
    pytest.param('{"type": "send", "room": ', "invalid_json", id="truncated-json"),
    pytest.param("[1, 2]", "invalid_frame", id="json-array"),
    pytest.param('{"room": "x"}', "invalid_frame", id="no-type"),
    pytest.param('{"type": "dance"}', "unknown_type", id="unknown-type"),
    pytest.param('{"type": "send", "room": "general"}', "invalid_frame", id="missing-body"),
    pytest.param('{"type": "join", "room": 5}', "invalid_frame", id="wrong-typed-room"),
    pytest.param('{"type": "join", "room": "BAD NAME"}', "invalid_frame", id="bad-room-name"),
    pytest.param('{"type": "join", "room": "a", "since": "x"}', "invalid_frame", id="bad-since"),
    pytest.param('{"type": "join", "room": "a", "since": -1}', "invalid_frame", id="negative"),
    pytest.param('{"type": "ping", "extra": 1}', "invalid_frame", id="unknown-field"),
    pytest.param(
        '{"type": "send", "room": "general", "body": "   "}', "invalid_frame", id="blank-body"
    ),
    pytest.param('{"type": "send", "room": "general", "body": "hi"}', "not_joined", id="send"),
    pytest.param('{"type": "typing", "room": "general"}', "not_joined", id="typing-not-joined"),
    pytest.param('{"type": "leave", "room": "general"}', "not_joined", id="leave-not-joined"),
    pytest.param('{"type": "join", "room": "no-such-room"}', "room_not_found", id="no-room"),
]


@pytest.mark.parametrize(("raw", "code"), ERRORS)
async def test_bad_frame_gets_error_and_connection_stays_open(
    scene: Scene, raw: str, code: str
) -> None:
    client = await connect(scene.server, await signup(scene.http))
    await client.send(raw)  # raw text: what no typed frame could be
    error = await client.expect(ErrorFrame)
    assert error.code == code
    assert "hello" not in error.detail  # the input is not echoed back
    assert await client.ping() == PongFrame()
    await scene.bystander_still_receives()
    await client.close()


async def test_error_echoes_the_frames_ref(scene: Scene) -> None:
    client = await connect(scene.server, await signup(scene.http))
    await client.say("elsewhere", "hi", ref="r-42")
    error = await client.expect(ErrorFrame)
    assert (error.code, error.ref) == ("not_joined", "r-42")
    await client.close()


async def test_join_private_room_as_non_member_gets_room_not_found(scene: Scene) -> None:
    secret = await make_room(scene.http, scene.owner, private=True)
    client = await connect(scene.server, await signup(scene.http))
    await client.send(JoinFrame(type="join", room=secret))
    error = await client.expect(ErrorFrame)
    assert error.code == "room_not_found"
    # Exactly what an unknown room answers: nothing tells the room exists.
    await client.send(JoinFrame(type="join", room="never-created"))
    assert await client.expect(ErrorFrame) == error
    owner = await connect(scene.server, scene.owner)
    assert (await owner.join(secret)).room == secret
    await scene.bystander_still_receives()
    await client.close()
    await owner.close()


async def test_binary_frame_closes_1003(scene: Scene) -> None:
    client = await connect(scene.server, await signup(scene.http))
    await client.send(b"\x00\x01")  # bytes: a binary frame
    code, frames = await client.closed()
    assert code == 1003
    assert isinstance(frames[-1], ByeFrame)
    await scene.bystander_still_receives()


@pytest.mark.parametrize("size", [16 * 1024 + 1, 100 * 1024], ids=["over-app-limit", "huge"])
async def test_oversized_frame_closes_1009(scene: Scene, size: int) -> None:
    client = await connect(scene.server, await signup(scene.http))
    # A dict: `SendFrame` refuses a body this long.
    await client.send({"type": "send", "room": scene.room, "body": "x" * size})
    code, _ = await client.closed()
    assert code == 1009
    await scene.bystander_still_receives()


async def test_origin_not_allowed_is_refused_at_handshake(scene: Scene) -> None:
    member = await signup(scene.http)
    # Raw sockets: the client library sends no Origin header (only browsers do).
    with pytest.raises(InvalidStatus) as refused:
        await raw_connect(
            f"{scene.server.ws_url}/ws",
            origin="http://evil.example",  # type: ignore[arg-type]
            additional_headers=member.headers,
        )
    assert refused.value.response.status_code == 403
    allowed = Socket(
        await raw_connect(
            f"{scene.server.ws_url}/ws",
            origin="http://allowed.example",  # type: ignore[arg-type]
            additional_headers=member.headers,
        )
    )
    assert (await allowed.wait_welcome(10)).user.id == member.id
    await allowed.close()


async def test_origin_of_the_service_itself_is_allowed(scene: Scene) -> None:
    # The bundled web page connects from the service's own origin, which needs no
    # ALLOWED_ORIGINS entry; the same host on another port is another origin.
    # Raw sockets: the client library sends no Origin header (only browsers do).
    member = await signup(scene.http)
    own = scene.server.base_url
    same = Socket(
        await raw_connect(
            f"{scene.server.ws_url}/ws",
            origin=own,  # type: ignore[arg-type]
            additional_headers=member.headers,
        )
    )
    assert (await same.wait_welcome(10)).user.id == member.id
    await same.close()
    host, port = own.rsplit(":", 1)
    with pytest.raises(InvalidStatus) as refused:
        await raw_connect(
            f"{scene.server.ws_url}/ws",
            origin=f"{host}:{int(port) + 1}",  # type: ignore[arg-type]
            additional_headers=member.headers,
        )
    assert refused.value.response.status_code == 403


async def test_auth_by_first_frame_gets_welcome(scene: Scene) -> None:
    member = await signup(scene.http, "Framed")
    client = await connect(scene.server)
    await client.send(AuthFrame(type="auth", token=member.token))
    welcome = await client.expect(WelcomeFrame)
    assert welcome.user == member.public
    assert welcome.heartbeat.interval > 0
    await client.close()


@pytest.mark.parametrize(
    "first",
    [
        PingFrame(type="ping"),
        AuthFrame(type="auth", token="not-a-jwt"),
        JoinFrame(type="join", room="general"),
    ],
    ids=["ping", "bad-token", "join"],
)
async def test_first_frame_not_a_valid_auth_closes_1008(
    scene: Scene, first: PingFrame | AuthFrame | JoinFrame
) -> None:
    client = await connect(scene.server)
    await client.send(first)
    code, frames = await client.closed()
    assert code == 1008
    assert isinstance(frames[0], ErrorFrame)
    assert frames[0].code in {"not_authenticated", "invalid_token"}
    assert isinstance(frames[-1], ByeFrame)
    await scene.bystander_still_receives()


async def test_bad_bearer_header_closes_1008(scene: Scene) -> None:
    client = await Socket.connect(scene.server.base_url, token="nope")
    assert isinstance(client, Socket)
    code, frames = await client.closed()
    assert code == 1008
    assert isinstance(frames[0], ErrorFrame)
    assert frames[0].code == "invalid_token"


# -- the strict server: short timeouts and a low message rate ---------------------------


@pytest.fixture
async def strict_http(strict_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=strict_server.base_url, timeout=10) as client:
        yield client


async def test_no_auth_within_timeout_closes_1008(strict_server: ServerProcess) -> None:
    client = await connect(strict_server)
    code, frames = await client.closed()
    assert code == 1008
    assert isinstance(frames[0], ErrorFrame)
    assert frames[0].code == "not_authenticated"


async def test_flood_gets_rate_limited_error_then_1008(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    owner = await signup(strict_http)
    room = await make_room(strict_http, owner)
    calm = await connect(strict_server, owner)
    await calm.join(room)
    flooder = await connect(strict_server, await signup(strict_http))
    for _ in range(200):
        await flooder.send(PingFrame(type="ping"))
    code, frames = await flooder.closed()
    assert code == 1008
    kinds: list[str] = [f.code if isinstance(f, ErrorFrame) else f.type for f in frames]
    assert "rate_limited" in kinds
    assert kinds.index("rate_limited") < len(kinds) - 1
    assert frames[-1] == ByeFrame(reason="message rate exceeded")
    # The calm connection is untouched.
    await calm.say(room, "fine")
    [frame] = await calm.messages(room, 1)
    assert frame.body == "fine"
    await calm.close()


async def test_ten_sockets_of_one_user_share_one_frame_budget(
    budget_server: ServerProcess,
) -> None:
    """WS_MESSAGES_PER_SECOND=20 (bursts of 40) for the user, not per socket: ten
    sockets sending 30 pings each at once get about one socket's worth of answers."""
    async with httpx.AsyncClient(base_url=budget_server.base_url, timeout=10) as http:
        user = await signup(http)
    sockets = [await connect(budget_server, user) for _ in range(10)]
    started = time.monotonic()
    for socket_ in sockets:
        for _ in range(30):
            await socket_.send(PingFrame(type="ping"))
    # A marker, answered after every ping before it, sent once the budget has had time
    # to refill (a marker refused for the rate would never be answered).
    await asyncio.sleep(2.5)
    for socket_ in sockets:
        await socket_.send(JoinFrame(type="join", room="no-such-room", ref="end"))
    answers: list[ServerFrame] = []
    for socket_ in sockets:
        while not isinstance(frame := await socket_.recv(10), ErrorFrame) or frame.ref != "end":
            answers.append(frame)
    elapsed = time.monotonic() - started
    pongs = sum(1 for frame in answers if isinstance(frame, PongFrame))
    refused = sum(
        1
        for frame in answers
        if isinstance(frame, ErrorFrame) and frame.code == ErrorCode.RATE_LIMITED
    )
    # The budget: the burst plus the rate over the whole exchange. Ten per-socket
    # budgets would have answered all 300 pings.
    assert pongs <= 40 + 20 * elapsed, (pongs, elapsed)
    assert pongs >= 20
    assert refused >= 1  # each socket over the budget is told (once per run of refusals)
    for socket_ in sockets:
        await socket_.close()


async def test_silent_client_is_closed_and_goes_offline(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    owner, quiet = await signup(strict_http), await signup(strict_http, "Quiet")
    room = await make_room(strict_http, owner)
    watcher = await connect(strict_server, owner)
    await watcher.join(room)
    silent = await connect(strict_server, quiet)
    await silent.join(room)

    pinger = asyncio.create_task(_keep_alive(watcher))
    code, frames = await silent.closed(within=10)
    assert code == 1008
    assert frames[-1] == ByeFrame(reason="heartbeat timeout")
    await watcher.expect(PresenceFrame, state="offline", user=quiet.public)
    pinger.cancel()
    await watcher.close()


async def _keep_alive(client: Socket) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(0.5)
            await client.send(PingFrame(type="ping"))


def _short_lived_token(member: Member, seconds: float) -> str:
    """A valid token for `member` that expires `seconds` from now."""
    codec = TokenCodec(make_settings(secret_key=TEST_SECRET, access_token_ttl_seconds=30))
    issued = utcnow() - timedelta(seconds=30 - seconds)
    # The member's own login, so only the expiry is under test.
    login = jwt.decode(member.token, options={"verify_signature": False})["sid"]
    return codec.encode_access(user_id=member.id, token_version=0, session_id=login, now=issued)


async def test_expired_token_without_refresh_closes_1008(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    member = await signup(strict_http)
    member.token = _short_lived_token(member, 1.5)
    client = await connect(strict_server, member)
    pinger = asyncio.create_task(_keep_alive(client))  # so no heartbeat timeout comes first
    code, frames = await client.closed(within=10)
    pinger.cancel()
    assert code == 1008
    codes = [f.code for f in frames if isinstance(f, ErrorFrame)]
    assert codes.count(ErrorCode.TOKEN_EXPIRED) == 2  # the warning, then the reason for closing
    assert frames[-1] == ByeFrame(reason="access token expired")


async def test_expired_token_refreshed_keeps_connection(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    member = await signup(strict_http)
    fresh = member.token
    member.token = _short_lived_token(member, 1.5)
    client = await connect(strict_server, member)
    pinger = asyncio.create_task(_keep_alive(client))
    warning = await client.expect(ErrorFrame, within=10)
    assert warning.code == "token_expired"
    await client.send(RefreshFrame(type="refresh", token=fresh))
    await asyncio.sleep(2)  # past the refresh deadline
    await client.send(TypingFrame(type="typing", room="nowhere", ref="still-open"))
    error = await client.expect(ErrorFrame)
    assert (error.code, error.ref) == ("not_joined", "still-open")
    pinger.cancel()
    await client.close()


async def test_refresh_with_another_users_token_closes_1008(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    ann, bob = await signup(strict_http), await signup(strict_http)
    client = await connect(strict_server, ann)
    await client.send(RefreshFrame(type="refresh", token=bob.token))
    code, frames = await client.closed()
    assert code == 1008
    assert isinstance(frames[0], ErrorFrame)
    assert frames[0].code == "invalid_token"


def test_error_codes_are_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "rooms.md").read_text(encoding="utf-8")
    for code in ErrorCode:
        assert f"`{code.value}`" in docs, code
    for close in ("1003", "1008", "1009", "1012", "1013"):
        assert close in docs


async def test_2_mib_frame_ends_in_1009_every_time(scene: Scene) -> None:
    # The server refuses the frame after its header, while the client is still writing
    # the rest: a plain close would reset the connection and the client would often
    # see 1006 instead of reading the close frame. Many tries, one outcome.
    member = await signup(scene.http)
    codes = []
    for _ in range(40):
        client = await connect(scene.server, member)
        with contextlib.suppress(ConnectionClosed):
            await client.send("x" * 2 * 1024 * 1024)  # raw text: no frame is this big
        code, _ = await client.closed()
        codes.append(code)
    assert codes == [1009] * 40
    await scene.bystander_still_receives()
