from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Path
from starlette.requests import HTTPConnection

from townsquare.api_keys import service as keys_service
from townsquare.auth.dependencies import CurrentUser, get_current_user, oauth2_scheme
from townsquare.auth.tokens import API_KEY_PREFIX
from townsquare.platform.dependencies import SessionDep
from townsquare.rooms import service as rooms_service
from townsquare.rooms.manager import ConnectionManager
from townsquare.rooms.models import Room
from townsquare.rooms.schemas import ROOM_NAME_PATTERN
from townsquare.users.schemas import UserPublic

RoomNamePath = Annotated[
    str, Path(max_length=64, pattern=ROOM_NAME_PATTERN, description="The room's name.")
]


async def get_room(
    name: RoomNamePath,
    viewer: CurrentUser,
    session: SessionDep,
) -> Room:
    """The room named in the path, if the caller may see it; 404 otherwise."""
    return await rooms_service.get_visible_room(session, name=name, viewer=viewer)


@dataclass(frozen=True, slots=True)
class Poster:
    """Who posts into which room: a signed-in user into a room they can see, or an API
    key into one of its rooms (as its service account)."""

    room: Room
    author: UserPublic
    is_api_key: bool


async def get_poster(
    connection: HTTPConnection,
    name: RoomNamePath,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Poster:
    # The one route that takes API keys: everything else goes through CurrentUser,
    # whose token decoding refuses them.
    if token is not None and token.startswith(API_KEY_PREFIX):
        key, author = await keys_service.authenticate(session, key=token)
        room = await keys_service.room_of_key(session, key=key, name=name)
        return Poster(room=room, author=UserPublic(id=author.id, name=author.name), is_api_key=True)
    user = await get_current_user(connection, token)
    room = await rooms_service.get_visible_room(session, name=name, viewer=user)
    return Poster(room=room, author=UserPublic(id=user.id, name=user.name), is_api_key=False)


async def get_manager(connection: HTTPConnection) -> ConnectionManager:
    return cast(ConnectionManager, connection.app.state.rooms)


VisibleRoom = Annotated[Room, Depends(get_room)]
Manager = Annotated[ConnectionManager, Depends(get_manager)]
MessagePoster = Annotated[Poster, Depends(get_poster)]
