"""B2/B3 peer: python-socketio with AsyncRedisManager, as a Python team would deploy it.

Socket.IO over the WebSocket transport under uvicorn; a connection authenticates with
a JWT in its connect payload (verified once, like townsquare's handshake); `join`
enters a room, `send` emits `message` to the room through the Redis manager.

    BENCH_REDIS_URL=redis://... BENCH_JWT_SECRET=... uvicorn bench.servers.sio:app
"""

from __future__ import annotations

import os
from typing import Any

import jwt
import socketio

SECRET = os.environ.get("BENCH_JWT_SECRET", "")
manager = socketio.AsyncRedisManager(
    os.environ["BENCH_REDIS_URL"], channel=os.environ.get("BENCH_CHANNEL_PREFIX", "bench-sio")
)
sio = socketio.AsyncServer(
    async_mode="asgi", client_manager=manager, transports=["websocket"], cors_allowed_origins=[]
)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
    try:
        claims = jwt.decode((auth or {}).get("token", ""), SECRET, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise socketio.exceptions.ConnectionRefusedError("invalid token") from exc
    await sio.save_session(sid, {"user": claims["sub"]})


@sio.event
async def join(sid: str, room: str) -> None:
    await sio.enter_room(sid, room)
    await sio.emit("joined", room, to=sid)


@sio.event
async def send(sid: str, data: dict[str, Any]) -> None:
    await sio.emit("message", data, room=data["room"])


app = socketio.ASGIApp(sio)
