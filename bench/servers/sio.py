"""B2/B3 peer: python-socketio with AsyncRedisManager, as a Python team would deploy it.

Socket.IO over the WebSocket transport under uvicorn; a connection authenticates with
a JWT in its connect payload (verified once, like townsquare's handshake); `join`
enters a room, `send` emits `message` to the room through the Redis manager. Defaults
otherwise, but for the heartbeat: Engine.IO's ping and uvicorn's WebSocket ping get the
same far-apart interval and patient timeout as townsquare's (BENCH_HEARTBEAT_*, from
the harness), since under a burst a pong waits behind the queued messages and the
20-second defaults drop the socket mid-run, and with it what was queued on it.
A server-side disconnect is written to the log with its reason.

    BENCH_REDIS_URL=redis://... BENCH_JWT_SECRET=... uvicorn bench.servers.sio:app
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jwt
import socketio

SECRET = os.environ.get("BENCH_JWT_SECRET", "")
manager = socketio.AsyncRedisManager(
    os.environ["BENCH_REDIS_URL"], channel=os.environ.get("BENCH_CHANNEL_PREFIX", "bench-sio")
)
sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=manager,
    transports=["websocket"],
    cors_allowed_origins=[],
    ping_interval=float(os.environ.get("BENCH_HEARTBEAT_INTERVAL", "25")),
    ping_timeout=float(os.environ.get("BENCH_HEARTBEAT_TIMEOUT", "20")),
)


async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
    try:
        claims = jwt.decode((auth or {}).get("token", ""), SECRET, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise socketio.exceptions.ConnectionRefusedError("invalid token") from exc
    await sio.save_session(sid, {"user": claims["sub"]})


async def join(sid: str, room: str) -> None:
    await sio.enter_room(sid, room)
    await sio.emit("joined", room, to=sid)


async def send(sid: str, data: dict[str, Any]) -> None:
    await sio.emit("message", data, room=data["room"])


async def disconnect(sid: str, reason: str) -> None:
    print(f"disconnect {sid}: {reason}", file=sys.stderr, flush=True)


for _handler in (connect, join, send, disconnect):
    sio.on(_handler.__name__, _handler)
app = socketio.ASGIApp(sio)
