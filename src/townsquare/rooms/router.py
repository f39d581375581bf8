from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from townsquare.auth.dependencies import CurrentUser
from townsquare.auth.exceptions import InvalidToken
from townsquare.platform.dependencies import SessionDep
from townsquare.platform.errors import responses
from townsquare.rooms import service as rooms_service
from townsquare.rooms.dependencies import Manager, VisibleRoom
from townsquare.rooms.exceptions import (
    IdempotencyKeyReused,
    MemberNotFound,
    NotRoomManager,
    OwnerCannotBeRemoved,
    RoomNameTaken,
    RoomNotFound,
)
from townsquare.rooms.protocol import LeftReason
from townsquare.rooms.schemas import (
    MAX_SEQ,
    MemberRead,
    MessageCreate,
    MessageRead,
    RoomCreate,
    RoomRead,
    RoomUpdate,
)
from townsquare.rooms.store import RoomRef
from townsquare.users.exceptions import UserNotFound
from townsquare.users.schemas import MAX_DB_INT, UserPublic

router = APIRouter(prefix="/rooms", tags=["rooms"])

_ROOM = responses(InvalidToken, RoomNotFound)
UserIdPath = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The user's id.")]
Seq = Annotated[int | None, Query(ge=0, le=MAX_SEQ)]


@router.post(
    "",
    response_model=RoomRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(InvalidToken, RoomNameTaken),
)
async def create_room(body: RoomCreate, user: CurrentUser, session: SessionDep) -> RoomRead:
    """Create a room; its creator becomes its owner and first member."""
    room = await rooms_service.create_room(
        session, owner=user, name=body.name, topic=body.topic, private=body.private
    )
    return RoomRead.model_validate(room)


@router.get("", response_model=list[RoomRead], responses=responses(InvalidToken))
async def list_rooms(
    user: CurrentUser,
    session: SessionDep,
    skip: Annotated[int, Query(ge=0, le=MAX_DB_INT, description="Rooms to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Most rooms to return.")] = 100,
) -> list[RoomRead]:
    """Public rooms and the private rooms the caller is a member of, by id."""
    rooms = await rooms_service.list_rooms(session, viewer=user, skip=skip, limit=limit)
    return [RoomRead.model_validate(room) for room in rooms]


@router.get("/{name}", response_model=RoomRead, responses=_ROOM)
async def get_room(room: VisibleRoom) -> RoomRead:
    """A room; a private room is a 404 to anyone but its members."""
    return RoomRead.model_validate(room)


@router.get("/{name}/members", response_model=list[MemberRead], responses=_ROOM)
async def list_members(room: VisibleRoom, session: SessionDep) -> list[MemberRead]:
    return await rooms_service.list_members(session, room=room)


@router.put(
    "/{name}/members/{user_id}",
    response_model=MemberRead,
    responses=responses(InvalidToken, RoomNotFound, NotRoomManager, UserNotFound),
)
async def add_member(
    room: VisibleRoom, user_id: UserIdPath, user: CurrentUser, session: SessionDep
) -> MemberRead:
    """Add a member (the owner or an admin; anyone may add themself to a public room).
    Adding a member twice is not an error."""
    return await rooms_service.add_member(session, room=room, actor=user, user_id=user_id)


@router.delete(
    "/{name}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(
        InvalidToken, RoomNotFound, NotRoomManager, MemberNotFound, OwnerCannotBeRemoved
    ),
)
async def remove_member(
    room: VisibleRoom, user_id: UserIdPath, user: CurrentUser, session: SessionDep, manager: Manager
) -> Response:
    """Remove a member (the owner or an admin; any member may remove themself). A
    member who loses access to the room (a private one) is taken out of it at once,
    on every instance (`left {reason: removed}`)."""
    await rooms_service.remove_member(session, room=room, actor=user, user_id=user_id)
    await manager.room_changed(room.name, user_id=user_id, reason=LeftReason.REMOVED)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch(
    "/{name}",
    response_model=RoomRead,
    responses=responses(InvalidToken, RoomNotFound, NotRoomManager),
)
async def update_room(
    body: RoomUpdate, room: VisibleRoom, user: CurrentUser, session: SessionDep, manager: Manager
) -> RoomRead:
    """Change the topic or make the room private or public (the owner or an admin).
    Made private, its non-members are taken out of it at once (`left`)."""
    made_private = body.private is True and not room.is_private
    room = await rooms_service.update_room(
        session,
        room=room,
        actor=user,
        topic=body.topic,
        private=body.private,
        clear_topic="topic" in body.model_fields_set,
    )
    if made_private:
        await manager.room_changed(room.name, user_id=None, reason=LeftReason.ACCESS_REVOKED)
    return RoomRead.model_validate(room)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(InvalidToken, RoomNotFound, NotRoomManager),
)
async def delete_room(
    room: VisibleRoom, user: CurrentUser, session: SessionDep, manager: Manager
) -> Response:
    """Delete the room with its members and history (the owner or an admin). Everyone
    in it gets `left {reason: room_deleted}` at once, on every instance."""
    name = room.name
    await rooms_service.delete_room(session, room=room, actor=user)
    await manager.room_changed(name, user_id=None, reason=LeftReason.ROOM_DELETED)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/messages", response_model=list[MessageRead], responses=_ROOM)
async def list_messages(
    room: VisibleRoom,
    session: SessionDep,
    after_seq: Annotated[Seq, Query(description="Only messages with a greater seq.")] = None,
    before_seq: Annotated[Seq, Query(description="Only messages with a smaller seq.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Most messages to return.")] = 50,
) -> list[MessageRead]:
    """History, oldest first: the first `limit` messages after `after_seq` when it is
    given, else the latest `limit` (before `before_seq`, when given)."""
    return await rooms_service.list_messages(
        session, room=room, after_seq=after_seq, before_seq=before_seq, limit=limit
    )


@router.post(
    "/{name}/messages",
    response_model=MessageRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(InvalidToken, RoomNotFound, IdempotencyKeyReused),
)
async def post_message(
    body: MessageCreate,
    room: VisibleRoom,
    user: CurrentUser,
    manager: Manager,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=128,
            description="Any unique string; a retried post with the same key (same user, "
            "same room) returns the message stored by the first one.",
        ),
    ] = None,
) -> MessageRead:
    """Store a message and deliver it live to the room."""
    message, created = await manager.send_message(
        RoomRef(room.id, room.name),
        author=UserPublic(id=user.id, name=user.name),
        body=body.body,
        idempotency_key=idempotency_key,
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return message
