"""B2/B3/B4 baselines: a bare FastAPI WebSocket with a redis-py fan-out.

No storage, no auth, no checks, no queues: what a room costs at the limit.

- `/ws?room=R`: says `ready` once registered; every text frame is published to the
  room's Redis channel, and one listener per process forwards each published frame to
  the room's local sockets, one `send_text` after another.
- `/idle`: accepts and waits (B3's bare socket).
- `/join`: accepts, says `welcome`, answers the first frame (a join) with `joined` and
  waits (B5's bare socket: townsquare's handshake with nothing behind it).
- `/replay?room=R&since=N`: reads the room's stored messages after N with one raw
  asyncpg query and sends each, encoded as a townsquare `message` frame (B4's
  "reading and encoding the same rows with nothing else").

    BENCH_REDIS_URL=redis://... BENCH_PG_DSN=postgresql://... uvicorn bench.servers.bare_ws:app
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from redis.asyncio import Redis

PREFIX = os.environ.get("BENCH_CHANNEL_PREFIX", "bench-bare:")
rooms: defaultdict[str, set[WebSocket]] = defaultdict(set)

REPLAY_QUERY = """
SELECT m.id, m.seq, m.body, m.created_at, m.client_id, u.id AS author_id, u.name
FROM messages m JOIN rooms r ON r.id = m.room_id LEFT JOIN users u ON u.id = m.author_id
WHERE r.name = $1 AND m.seq > $2 ORDER BY m.seq
"""


async def listen(redis: Redis) -> None:
    async with redis.pubsub() as pubsub:
        await pubsub.psubscribe(f"{PREFIX}*")
        async for message in pubsub.listen():
            if message["type"] != "pmessage":
                continue
            room = message["channel"].decode()[len(PREFIX) :]
            text = message["data"].decode()
            for websocket in list(rooms.get(room, ())):
                with contextlib.suppress(Exception):
                    await websocket.send_text(text)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    redis_url = os.environ.get("BENCH_REDIS_URL")
    app.state.redis = Redis.from_url(redis_url) if redis_url else None
    listener = asyncio.create_task(listen(app.state.redis)) if redis_url else None
    try:
        yield
    finally:
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}


@app.websocket("/ws")
async def room_socket(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    members = rooms[room]
    members.add(websocket)
    redis: Redis = app.state.redis
    channel = f"{PREFIX}{room}"
    try:
        await websocket.send_text("ready")
        while True:
            await redis.publish(channel, await websocket.receive_text())
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(websocket)


@app.websocket("/idle")
async def idle_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("ready")
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


@app.websocket("/join")
async def join_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text('{"type":"welcome"}')
    with contextlib.suppress(WebSocketDisconnect):
        room = json.loads(await websocket.receive_text())["room"]
        await websocket.send_text(json.dumps({"type": "joined", "room": room, "seq": 0}))
        while True:
            await websocket.receive_text()


@app.websocket("/replay")
async def replay(websocket: WebSocket, room: str, since: int = 0) -> None:
    await websocket.accept()
    connection = await asyncpg.connect(os.environ["BENCH_PG_DSN"])
    try:
        for row in await connection.fetch(REPLAY_QUERY, room, since):
            author = (
                None if row["author_id"] is None else {"id": row["author_id"], "name": row["name"]}
            )
            frame = {
                "type": "message",
                "room": room,
                "id": row["id"],
                "seq": row["seq"],
                "author": author,
                "body": row["body"],
                "sent_at": row["created_at"].isoformat(),
                "client_id": row["client_id"],
            }
            await websocket.send_text(json.dumps(frame, separators=(",", ":")))
        await websocket.send_text("done")
        with contextlib.suppress(WebSocketDisconnect):
            await websocket.receive_text()
    finally:
        await connection.close()
