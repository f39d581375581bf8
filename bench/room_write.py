"""Messages per second into one room, many concurrent senders, SQLite vs PostgreSQL.

Runs the server's write path in process: the room's group commit
(`rooms.store.MessageStore`: the permission check, the `seq` range and the insert of
each batch, one transaction) and the hub publish of each stored batch, for N senders
at once sharing one room. Prints a table; nothing is asserted.

    python bench/room_write.py [--senders 1,10,50] [--messages 2000]

PostgreSQL: a throwaway database is created on BENCH_POSTGRES_URL (default: the
test server, postgresql+asyncpg://postgres@127.0.0.1:5432/test) and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from townsquare.platform import migrations
from townsquare.platform.broker.hub import Hub
from townsquare.platform.broker.memory import MemoryBackend
from townsquare.platform.database import Database, create_database
from townsquare.rooms import history
from townsquare.rooms import service as rooms_service
from townsquare.rooms.manager import room_channel
from townsquare.rooms.models import Message
from townsquare.rooms.schemas import MessageRead
from townsquare.rooms.store import MessageStore, RoomRef
from townsquare.users import service as users_service
from townsquare.users.schemas import UserPublic

POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


async def _one_run(database: Database, senders: int, total: int) -> float:
    hub = Hub(MemoryBackend())
    await hub.start()

    async def publish(room: RoomRef, messages: list[MessageRead]) -> None:
        envelopes = [hub.envelope(history.message_text(m), seq=m.seq) for m in messages]
        await hub.publish_many(room_channel(room.name), envelopes)

    store = MessageStore(database, publish)
    async with database.sessions() as session:
        user = await users_service.create_user(
            session,
            name="Bench",
            email=f"{uuid.uuid4().hex}@example.com",
            password_hash="x",  # noqa: S106 (never logs in)
        )
        room = await rooms_service.create_room(
            session, owner=user, name=f"b-{uuid.uuid4().hex[:12]}", topic=None, private=False
        )
    ref = RoomRef(room.id, room.name)
    author = UserPublic(id=user.id, name=user.name)
    per_sender = total // senders

    async def sender(index: int) -> None:
        for number in range(per_sender):
            await store.store(ref, author=author, body=f"message {index}-{number}")

    started = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    elapsed = time.perf_counter() - started
    await store.close()
    await hub.stop()
    async with database.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.room_id == room.id)
        )
        top = await rooms_service.last_seq(session, room_id=room.id)
    assert count == top == per_sender * senders, (count, top)
    return per_sender * senders / elapsed


async def _bench(url: str, senders: list[int], total: int) -> dict[int, float]:
    database = create_database(url, pool_size=20, max_overflow=40)
    try:
        await migrations.upgrade(database.engine)
        return {n: await _one_run(database, n, total) for n in senders}
    finally:
        await database.dispose()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", default="1,10,50", help="comma-separated sender counts")
    parser.add_argument("--messages", type=int, default=2000, help="messages per run")
    args = parser.parse_args()
    senders = [int(n) for n in args.senders.split(",")]

    results: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = await _bench(
            f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", senders, args.messages
        )
    name = f"townsquare_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL not reachable ({exc!r}); SQLite only")
    else:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            results["PostgreSQL"] = await _bench(url, senders, args.messages)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    print(f"\nmessages/second into one room ({args.messages} messages per run)\n")
    header = "senders | " + " | ".join(f"{db:>10}" for db in results)
    print(header)
    print("-" * len(header))
    for n in senders:
        print(f"{n:>7} | " + " | ".join(f"{results[db][n]:>10.0f}" for db in results))


if __name__ == "__main__":
    asyncio.run(main())
