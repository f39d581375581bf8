"""Storing messages: group commit, one transaction per batch per room.

Concurrent sends to one room in one process wait in that room's queue; one task per
room takes everything queued (up to `max_batch`) and stores it in one transaction:
the permission check, the `client_id` / `Idempotency-Key` dedupe, the `seq` range
and the insert. On PostgreSQL that is one statement (one round trip); on SQLite a
short transaction under its single-writer lock. Each sender is answered after the
commit; a batch starts only after the previous one of its room finished, so rooms
publish in `seq` order, and rooms never wait on each other.

`seq` stays gap-free: the range is taken from the room's row (`last_seq`) in the
transaction that inserts the rows, and only for rows that are really inserted
(duplicates and refused rows take no number). Two processes storing into one room
are serialized by that row's lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from townsquare.auth.exceptions import EmailNotVerified
from townsquare.platform.database import Database, utcnow
from townsquare.platform.errors import AppError
from townsquare.rooms.exceptions import IdempotencyKeyReused, RoomNotFound
from townsquare.rooms.models import Message, Room, RoomMember
from townsquare.rooms.schemas import MessageRead
from townsquare.users.models import User
from townsquare.users.schemas import UserPublic

logger = logging.getLogger(__name__)

# A batch that hits a unique constraint (the same client_id raced in from another
# process between our check and our insert) is tried again; the retry sees the row.
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class RoomRef:
    id: int
    name: str


@dataclass(slots=True, eq=False)
class Draft:
    """A message waiting to be stored, and the sender waiting for it."""

    author: UserPublic
    body: str
    client_id: str | None
    idempotency_key: str | None
    # Whether the author's right to post is checked in the storing transaction (a
    # user); False for senders the caller already vouched for.
    check_access: bool
    done: asyncio.Future[tuple[MessageRead, bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # Other drafts of the same batch with the same author and client_id or key.
    twins: list[Draft] = field(default_factory=list)

    def dedupe_key(self) -> tuple[int, str, str] | None:
        if self.client_id is not None:
            return (self.author.id, "c", self.client_id)
        if self.idempotency_key is not None:
            return (self.author.id, "k", self.idempotency_key)
        return None


Publish = Callable[[RoomRef, list[MessageRead]], Awaitable[None]]


@dataclass
class _Queue:
    drafts: deque[Draft] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


# Most messages of one room stored in one transaction.
MAX_BATCH = 256


class MessageStore:
    """Per-process group commit; `publish` is called with each batch's new messages,
    in `seq` order, before the next batch of that room is stored."""

    def __init__(
        self,
        database: Database,
        publish: Publish,
        *,
        max_batch: int = MAX_BATCH,
        require_verified_email: bool = False,
    ) -> None:
        self.database = database
        # REQUIRE_VERIFIED_EMAIL: an author whose email is not verified (now: it may
        # have changed since the socket joined) is refused when the message is stored.
        self.require_verified_email = require_verified_email
        self._publish = publish
        self.max_batch = max_batch
        self._queues: dict[int, _Queue] = {}
        self._postgres = database.engine.dialect.name == "postgresql"
        self.batches = 0  # stored batches, for tests and benchmarks

    async def store(
        self,
        room: RoomRef,
        *,
        author: UserPublic,
        body: str,
        client_id: str | None = None,
        idempotency_key: str | None = None,
        check_access: bool = True,
    ) -> tuple[MessageRead, bool]:
        """Store a message with the room's next `seq`; it and whether it is new (a
        repeated `client_id` or `Idempotency-Key` returns the message stored first).
        Raises `RoomNotFound` when the author may not post in the room (anymore)."""
        draft = Draft(author, body, client_id, idempotency_key, check_access)
        queue = self._queues.get(room.id)
        if queue is None:
            queue = self._queues[room.id] = _Queue()
        queue.drafts.append(draft)
        if queue.task is None:
            queue.task = asyncio.create_task(self._drain(room, queue), name=f"store-{room.name}")
        # The batch goes on even if this sender gives up: others may share it.
        return await asyncio.shield(draft.done)

    async def close(self) -> None:
        tasks = [queue.task for queue in self._queues.values() if queue.task is not None]
        if tasks:
            await asyncio.wait(tasks)

    async def _drain(self, room: RoomRef, queue: _Queue) -> None:
        try:
            while queue.drafts:
                count = min(len(queue.drafts), self.max_batch)
                batch = [queue.drafts.popleft() for _ in range(count)]
                new = await self._store_batch(room, batch)
                if new:
                    try:
                        await self._publish(room, new)
                    except Exception:
                        # Stored and acknowledged; members recover it from history.
                        logger.exception(
                            "publishing %d message(s) of %s failed", len(new), room.name
                        )
        finally:
            queue.task = None
            if not queue.drafts:
                self._queues.pop(room.id, None)
            else:  # a sender queued after the loop ended (cancellation): go on
                queue.task = asyncio.create_task(self._drain(room, queue))

    async def _store_batch(self, room: RoomRef, batch: list[Draft]) -> list[MessageRead]:
        """Store `batch`, answer every draft, return the new messages in seq order."""
        leaders = _fold_twins(batch)
        for attempt in range(_ATTEMPTS):
            try:
                results = await self._commit(room, leaders)
                break
            except IntegrityError:
                if attempt == _ATTEMPTS - 1:
                    logger.exception("storing a batch into %s kept conflicting", room.name)
                    _fail(batch, RuntimeError("conflicting concurrent writes"))
                    return []
            except Exception as exc:
                logger.exception("storing a batch into %s failed", room.name)
                _fail(batch, exc)
                return []
        self.batches += 1
        new: list[MessageRead] = []
        for draft, outcome in zip(leaders, results, strict=True):
            if isinstance(outcome, AppError):
                _fail([draft, *draft.twins], outcome)
                continue
            message, created = outcome
            if created:
                new.append(message)
            if not draft.done.done():
                draft.done.set_result((message, created))
            for twin in draft.twins:
                if twin.idempotency_key is not None and twin.body != message.body:
                    twin.done.set_exception(IdempotencyKeyReused())
                elif not twin.done.done():
                    twin.done.set_result((message, False))
        new.sort(key=lambda message: message.seq)
        return new

    async def _commit(
        self, room: RoomRef, drafts: list[Draft]
    ) -> list[tuple[MessageRead, bool] | AppError]:
        now = utcnow()
        async with self.database.engine.connect() as connection:
            verified = self.require_verified_email
            if self._postgres:
                rows = await _store_postgres(connection, room, drafts, now, verified)
            else:
                rows = await _store_sqlite(connection, room, drafts, now, verified)
            await connection.commit()
        return [_outcome(room, draft, row) for draft, row in zip(drafts, rows, strict=True)]


@dataclass(frozen=True, slots=True)
class _Row:
    """What became of one draft: refused, or a stored message and whether it is new."""

    allowed: bool
    id: int = 0
    seq: int = 0
    body: str = ""
    created_at: datetime | None = None
    client_id: str | None = None
    created: bool = False
    unverified: bool = False  # refused for REQUIRE_VERIFIED_EMAIL


_REFUSED = _Row(allowed=False)
_UNVERIFIED = _Row(allowed=False, unverified=True)


def _outcome(room: RoomRef, draft: Draft, row: _Row) -> tuple[MessageRead, bool] | AppError:
    if row.unverified:
        return EmailNotVerified()
    if not row.allowed:
        return RoomNotFound()
    if not row.created and draft.idempotency_key is not None and row.body != draft.body:
        return IdempotencyKeyReused()
    assert row.created_at is not None
    message = MessageRead(
        id=row.id,
        room=room.name,
        seq=row.seq,
        author=draft.author,
        body=row.body,
        sent_at=row.created_at,
        client_id=row.client_id,
    )
    return message, row.created


def _fold_twins(batch: list[Draft]) -> list[Draft]:
    """One draft per (author, client_id or key); the others ride along as twins."""
    leaders: list[Draft] = []
    seen: dict[tuple[int, str, str], Draft] = {}
    for draft in batch:
        key = draft.dedupe_key()
        if key is not None and key in seen:
            seen[key].twins.append(draft)
            continue
        if key is not None:
            seen[key] = draft
        leaders.append(draft)
    return leaders


def _fail(drafts: Sequence[Draft], exc: BaseException) -> None:
    for draft in drafts:
        for waiting in (draft, *draft.twins):
            if not waiting.done.done():
                waiting.done.set_exception(exc)


# PostgreSQL: one statement. `input` is the batch; `allowed` keeps the rows whose
# author may post now (active, and the room public, or a member, or an admin, unless
# the caller vouched for them); `existing` finds rows stored before under the same
# client_id or key; `fresh` numbers the rest; `bump` moves the room's counter by
# their count (taking the room's row lock); `inserted` stores them with consecutive
# seqs. The result tags each row by what it is.
_PG_STORE = text(
    """
WITH input AS (
    SELECT * FROM unnest(
        CAST(:ords AS int[]), CAST(:authors AS int[]), CAST(:bodies AS text[]),
        CAST(:client_ids AS text[]), CAST(:keys AS text[]), CAST(:checks AS bool[])
    ) AS t(ord, author_id, body, client_id, idempotency_key, check_access)
),
room AS (
    SELECT id, is_private FROM rooms WHERE id = :room_id
),
allowed AS (
    SELECT i.* FROM input i, room r
    WHERE NOT i.check_access OR EXISTS (
        SELECT 1 FROM users u
        WHERE u.id = i.author_id AND u.is_active
          AND (NOT :require_verified OR u.email_verified_at IS NOT NULL) AND (
            NOT r.is_private OR u.is_admin OR EXISTS (
                SELECT 1 FROM room_members m
                WHERE m.room_id = r.id AND m.user_id = i.author_id
            )
        )
    )
),
existing AS (
    SELECT a.ord, m.id, m.seq, m.body, m.created_at, m.client_id
    FROM allowed a JOIN messages m
      ON m.room_id = :room_id AND m.author_id = a.author_id
     AND ((a.client_id IS NOT NULL AND m.client_id = a.client_id)
       OR (a.client_id IS NULL AND a.idempotency_key IS NOT NULL
           AND m.idempotency_key = a.idempotency_key))
),
fresh AS (
    SELECT a.*, row_number() OVER (ORDER BY a.ord) AS n, count(*) OVER () AS total
    FROM allowed a WHERE a.ord NOT IN (SELECT ord FROM existing)
),
bump AS (
    UPDATE rooms SET last_seq = last_seq + (SELECT count(*) FROM fresh)
    WHERE id = :room_id AND EXISTS (SELECT 1 FROM fresh)
    RETURNING last_seq
),
inserted AS (
    INSERT INTO messages (room_id, seq, author_id, body, client_id, idempotency_key, created_at)
    SELECT :room_id, b.last_seq - f.total + f.n, f.author_id, f.body, f.client_id,
           f.idempotency_key, :now
    FROM fresh f, bump b
    RETURNING id, seq
)
SELECT 'u' AS kind, i.ord, NULL::int AS id, NULL::int AS seq, NULL AS body,
       NULL::timestamptz AS created_at, NULL AS client_id
FROM input i JOIN users u ON u.id = i.author_id
WHERE :require_verified AND i.check_access AND u.email_verified_at IS NULL
UNION ALL
SELECT 'a' AS kind, ord, NULL::int AS id, NULL::int AS seq, NULL AS body,
       NULL::timestamptz AS created_at, NULL AS client_id FROM allowed
UNION ALL
SELECT 'e', ord, id, seq, body, created_at, client_id FROM existing
UNION ALL
SELECT 'i', NULL, id, seq, NULL, NULL, NULL FROM inserted
"""
).bindparams(bindparam("now", type_=Message.__table__.c.created_at.type))


async def _store_postgres(
    connection: AsyncConnection,
    room: RoomRef,
    drafts: list[Draft],
    now: datetime,
    require_verified: bool,
) -> list[_Row]:
    result = await connection.execute(
        _PG_STORE,
        {
            "room_id": room.id,
            "now": now,
            "require_verified": require_verified,
            "ords": list(range(len(drafts))),
            "authors": [draft.author.id for draft in drafts],
            "bodies": [draft.body for draft in drafts],
            "client_ids": [draft.client_id for draft in drafts],
            "keys": [None if draft.client_id else draft.idempotency_key for draft in drafts],
            "checks": [draft.check_access for draft in drafts],
        },
    )
    allowed: set[int] = set()
    unverified: set[int] = set()
    existing: dict[int, _Row] = {}
    inserted: list[tuple[int, int]] = []
    for kind, ord_, id_, seq, body, created_at, client_id in result:
        if kind == "a":
            allowed.add(ord_)
        elif kind == "u":
            unverified.add(ord_)
        elif kind == "e":
            existing[ord_] = _Row(True, id_, seq, body, created_at, client_id, created=False)
        else:
            inserted.append((seq, id_))
    inserted.sort()
    fresh = iter(inserted)
    rows = []
    for ord_, draft in enumerate(drafts):
        if ord_ in unverified:
            rows.append(_UNVERIFIED)
        elif ord_ not in allowed:
            rows.append(_REFUSED)
        elif ord_ in existing:
            rows.append(existing[ord_])
        else:
            seq, id_ = next(fresh)
            rows.append(_Row(True, id_, seq, draft.body, now, draft.client_id, created=True))
    return rows


async def _store_sqlite(
    connection: AsyncConnection,
    room: RoomRef,
    drafts: list[Draft],
    now: datetime,
    require_verified: bool,
) -> list[_Row]:
    # Take SQLite's write lock first, so the checks below cannot go stale before the
    # insert (SQLite has one writer at a time).
    await connection.execute(update(Room).where(Room.id == room.id).values(last_seq=Room.last_seq))
    allowed, unverified = await _sqlite_allowed(connection, room, drafts, require_verified)
    existing = await _sqlite_existing(connection, room, allowed)
    fresh = [draft for draft in allowed if id(draft) not in existing]
    created: dict[int, tuple[int, int]] = {}
    if fresh:
        last = (
            await connection.execute(
                update(Room)
                .where(Room.id == room.id)
                .values(last_seq=Room.last_seq + len(fresh))
                .returning(Room.last_seq)
            )
        ).scalar_one()
        first = last - len(fresh) + 1
        values = [
            {
                "room_id": room.id,
                "seq": first + index,
                "author_id": draft.author.id,
                "body": draft.body,
                "client_id": draft.client_id,
                "idempotency_key": None if draft.client_id else draft.idempotency_key,
                "created_at": now,
            }
            for index, draft in enumerate(fresh)
        ]
        stored = await connection.execute(
            insert(Message).returning(Message.id, Message.seq, sort_by_parameter_order=True),
            values,
        )
        for draft, (id_, seq) in zip(fresh, stored, strict=True):
            created[id(draft)] = (id_, seq)
    rows = []
    for draft in drafts:
        if id(draft) in unverified:
            rows.append(_UNVERIFIED)
        elif draft not in allowed:
            rows.append(_REFUSED)
        elif id(draft) in existing:
            rows.append(existing[id(draft)])
        else:
            id_, seq = created[id(draft)]
            rows.append(_Row(True, id_, seq, draft.body, now, draft.client_id, created=True))
    return rows


async def _sqlite_allowed(
    connection: AsyncConnection, room: RoomRef, drafts: list[Draft], require_verified: bool
) -> tuple[list[Draft], set[int]]:
    """The drafts whose author may post now, and (by `id`) those refused only for an
    unverified email."""
    private = (
        await connection.execute(select(Room.is_private).where(Room.id == room.id))
    ).scalar_one_or_none()
    if private is None:
        return [], set()
    checked = {draft.author.id for draft in drafts if draft.check_access}
    if not checked:
        return list(drafts), set()
    users = {
        row.id: row
        for row in await connection.execute(
            select(User.id, User.is_active, User.is_admin, User.email_verified_at).where(
                User.id.in_(checked)
            )
        )
    }
    unverified = {
        id(draft)
        for draft in drafts
        if require_verified
        and draft.check_access
        and draft.author.id in users
        and users[draft.author.id].email_verified_at is None
    }
    members: set[int] = set()
    if private:
        members = set(
            (
                await connection.execute(
                    select(RoomMember.user_id).where(
                        RoomMember.room_id == room.id, RoomMember.user_id.in_(checked)
                    )
                )
            ).scalars()
        )

    def may_post(draft: Draft) -> bool:
        if not draft.check_access:
            return True
        if id(draft) in unverified:
            return False
        user = users.get(draft.author.id)
        if user is None or not user.is_active:
            return False
        return not private or user.is_admin or draft.author.id in members

    return [draft for draft in drafts if may_post(draft)], unverified


async def _sqlite_existing(
    connection: AsyncConnection, room: RoomRef, drafts: list[Draft]
) -> dict[int, _Row]:
    """Rows stored before under a draft's client_id or key, by `id(draft)`."""
    conditions: list[Any] = []
    for draft in drafts:
        if draft.client_id is not None:
            conditions.append(
                and_(Message.author_id == draft.author.id, Message.client_id == draft.client_id)
            )
        elif draft.idempotency_key is not None:
            conditions.append(
                and_(
                    Message.author_id == draft.author.id,
                    Message.idempotency_key == draft.idempotency_key,
                )
            )
    if not conditions:
        return {}
    found = await connection.execute(
        select(
            Message.id,
            Message.seq,
            Message.author_id,
            Message.body,
            Message.created_at,
            Message.client_id,
            Message.idempotency_key,
        ).where(Message.room_id == room.id, or_(*conditions))
    )
    by_key: dict[tuple[int | None, str, str | None], _Row] = {}
    for row in found:
        stored = _Row(True, row.id, row.seq, row.body, row.created_at, row.client_id)
        if row.client_id is not None:
            by_key[(row.author_id, "c", row.client_id)] = stored
        if row.idempotency_key is not None:
            by_key[(row.author_id, "k", row.idempotency_key)] = stored
    existing = {}
    for draft in drafts:
        key = draft.dedupe_key()
        if key is not None and key in by_key:
            existing[id(draft)] = by_key[key]
    return existing
