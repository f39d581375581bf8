"""Message frames: encoded once per message, and read back from history in bulk.

A `message` frame is built from a plain dict by pydantic's JSON encoder, which
writes exactly what `MessageFrame.model_dump_json()` writes (a test holds them
equal) at a quarter of the cost; replays and gap fills read plain rows, not ORM
objects.
"""

from __future__ import annotations

from datetime import datetime

from pydantic_core import to_json
from sqlalchemy import bindparam, select

from townsquare.platform.database import Database, DirectRead
from townsquare.rooms.models import Message
from townsquare.rooms.schemas import MessageRead
from townsquare.rooms.store import RoomRef
from townsquare.users.models import User


def frame_text(
    room: str,
    id_: int,
    seq: int,
    author_id: int | None,
    author_name: str | None,
    body: str,
    sent_at: datetime,
    client_id: str | None,
) -> str:
    author = None
    if author_id is not None and author_name is not None:
        author = {"id": author_id, "name": author_name}
    return to_json(
        {
            "type": "message",
            "room": room,
            "id": id_,
            "seq": seq,
            "author": author,
            "body": body,
            "sent_at": sent_at,
            "client_id": client_id,
        }
    ).decode()


def message_text(message: MessageRead) -> str:
    author = message.author
    return frame_text(
        message.room,
        message.id,
        message.seq,
        None if author is None else author.id,
        None if author is None else author.name,
        message.body,
        message.sent_at,
        message.client_id,
    )


# The room's messages in a range of seq, oldest first, with their authors' names.
_RANGE = DirectRead(
    select(
        Message.id,
        Message.seq,
        Message.author_id,
        User.name,
        Message.body,
        Message.created_at,
        Message.client_id,
    )
    .outerjoin(User, User.id == Message.author_id)
    .where(
        Message.room_id == bindparam("room_id"),
        Message.seq > bindparam("after"),
        Message.seq <= bindparam("upto"),
    )
    .order_by(Message.seq)
    .limit(bindparam("limit"))
)


async def frames(
    database: Database, room: RoomRef, *, after: int, upto: int, limit: int
) -> list[tuple[int, str]]:
    """`(seq, frame)` of the room's messages with `after < seq <= upto`, oldest first,
    at most `limit`: one query on a pooled connection, rows read as plain tuples."""
    rows = await _RANGE.fetch_all(database, room_id=room.id, after=after, upto=upto, limit=limit)
    name = room.name
    return [
        (seq, frame_text(name, id_, seq, author_id, author_name, body, sent_at, client_id))
        for id_, seq, author_id, author_name, body, sent_at, client_id in rows
    ]
