from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Path
from starlette.requests import HTTPConnection

from townsquare.auth.dependencies import CurrentUser
from townsquare.platform.dependencies import SessionDep
from townsquare.rooms import service as rooms_service
from townsquare.rooms.manager import ConnectionManager
from townsquare.rooms.models import Room
from townsquare.rooms.schemas import ROOM_NAME_PATTERN


async def get_room(
    name: Annotated[
        str, Path(max_length=64, pattern=ROOM_NAME_PATTERN, description="The room's name.")
    ],
    viewer: CurrentUser,
    session: SessionDep,
) -> Room:
    """The room named in the path, if the caller may see it; 404 otherwise."""
    return await rooms_service.get_visible_room(session, name=name, viewer=viewer)


async def get_manager(connection: HTTPConnection) -> ConnectionManager:
    return cast(ConnectionManager, connection.app.state.rooms)


VisibleRoom = Annotated[Room, Depends(get_room)]
Manager = Annotated[ConnectionManager, Depends(get_manager)]
