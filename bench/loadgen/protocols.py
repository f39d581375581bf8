"""What each server arm speaks on its socket, seen from the client.

Every arm carries the same message body, `@@<sender>|<n>|<monotonic ns>@@`, so one
receiver checks loss, order, duplicates and latency the same way for all of them;
only the envelope around it and the join handshake differ.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

MARK = re.compile(rb"@@(\d+)\|(\d+)\|(\d+)@@")
SEQ = re.compile(rb'"seq":\s*(\d+)')


def body(sender: int, n: int, t_ns: int) -> str:
    return f"@@{sender}|{n}|{t_ns}@@"


@dataclass(frozen=True)
class Step:
    """One step of a handshake: wait for a frame containing `expect`, then send `reply`
    (nothing when None)."""

    expect: bytes
    reply: bytes | None


class Protocol:
    name = "base"
    # True when frames carry the server's per-room `seq` (checked gap-free).
    has_seq = False

    def path(self, room: str) -> str:
        raise NotImplementedError

    def headers(self, token: str) -> dict[str, str]:
        return {}

    def handshake(self, room: str | None, token: str) -> list[Step]:
        """Steps until the socket is authenticated and (with a room) receives the room."""
        raise NotImplementedError

    def send(self, room: str, text: str) -> bytes:
        raise NotImplementedError

    def answer(self, data: bytes) -> bytes | None:
        """The reply a control frame asks for (Engine.IO's ping), if any."""
        return None

    def is_error(self, data: bytes) -> bool:
        return False


class Townsquare(Protocol):
    name = "townsquare"
    has_seq = True

    def path(self, room: str) -> str:
        return "/ws"

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def handshake(self, room: str | None, token: str) -> list[Step]:
        steps = [Step(b'"welcome"', None)]
        if room is not None:
            steps[0] = Step(b'"welcome"', self.join(room))
            steps.append(Step(b'"joined"', None))
        return steps

    def join(self, room: str, since: int | None = None) -> bytes:
        frame: dict[str, object] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        return json.dumps(frame).encode()

    def send(self, room: str, text: str) -> bytes:
        return json.dumps({"type": "send", "room": room, "body": text}).encode()

    def is_error(self, data: bytes) -> bool:
        # An `error` frame, or a join that will not replay what it asked for.
        return (
            b'"type":"error"' in data
            or b'"type": "error"' in data
            or b'"recovered":false' in data
            or b'"recovered": false' in data
        )


class Bare(Protocol):
    name = "bare"

    def path(self, room: str) -> str:
        return f"/ws?room={quote(room)}"

    def handshake(self, room: str | None, token: str) -> list[Step]:
        return [Step(b"ready", None)]

    def send(self, room: str, text: str) -> bytes:
        return text.encode()


class BareIdle(Bare):
    def path(self, room: str) -> str:
        return "/idle"


class BareReplay(Bare):
    """The bare server's `/replay`: frames start at once, no handshake."""

    def handshake(self, room: str | None, token: str) -> list[Step]:
        return []


REPLAY = BareReplay()


class BareJoin(Townsquare):
    """The bare server's `/join`: townsquare's handshake (welcome, join, joined) only."""

    name = "bare-join"
    has_seq = False

    def path(self, room: str) -> str:
        return "/join"


class SocketIO(Protocol):
    """Socket.IO v5 over Engine.IO v4, WebSocket transport only."""

    name = "socketio"

    def path(self, room: str) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    def handshake(self, room: str | None, token: str) -> list[Step]:
        steps = [Step(b'0{"sid"', b"40" + json.dumps({"token": token}).encode())]
        if room is None:
            steps.append(Step(b'40{"sid"', None))
        else:
            steps.append(Step(b'40{"sid"', b"42" + json.dumps(["join", room]).encode()))
            steps.append(Step(b'42["joined"', None))
        return steps

    def send(self, room: str, text: str) -> bytes:
        return b"42" + json.dumps(["send", {"room": room, "body": text}]).encode()

    def answer(self, data: bytes) -> bytes | None:
        return b"3" if data == b"2" else None

    def is_error(self, data: bytes) -> bool:
        # 44: connect refused; 41: the server left the namespace (its socket is gone from
        # the room); 1: Engine.IO closes the session (a missed ping). The WebSocket may
        # stay open after the last two, so they are the only sign of a dropped socket.
        return data.startswith((b"44", b"41")) or data == b"1"


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (Townsquare(), Bare(), SocketIO(), BareJoin())}
IDLE_PROTOCOLS: dict[str, Protocol] = {
    "townsquare": Townsquare(),
    "bare": BareIdle(),
    "socketio": SocketIO(),
}
