from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from townsquare.api_keys import service as keys_service
from townsquare.api_keys.exceptions import ApiKeyNotFound, RoomsNotFound
from townsquare.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from townsquare.auth.dependencies import AdminUser
from townsquare.auth.exceptions import AdminRequired, InvalidToken
from townsquare.platform.dependencies import SessionDep
from townsquare.platform.errors import responses
from townsquare.users.schemas import MAX_DB_INT

router = APIRouter(prefix="/api-keys", tags=["api keys"])

_ADMIN = (InvalidToken, AdminRequired)


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=responses(*_ADMIN, RoomsNotFound),
)
async def create_api_key(
    body: ApiKeyCreate, admin: AdminUser, session: SessionDep
) -> ApiKeyCreated:
    """Admins only: a key that lets another backend post into `rooms` through
    POST /rooms/{name}/messages, as author `name`. The secret is in this answer only."""
    return await keys_service.create_key(
        session, name=body.name, room_names=body.rooms, creator_id=admin.id
    )


@router.get("", response_model=list[ApiKeyRead], responses=responses(*_ADMIN))
async def list_api_keys(
    admin: AdminUser,
    session: SessionDep,
    skip: Annotated[int, Query(ge=0, le=MAX_DB_INT, description="Keys to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Most keys to return.")] = 100,
) -> list[ApiKeyRead]:
    """Admins only: the keys by id, without their secrets."""
    return await keys_service.list_keys(session, skip=skip, limit=limit)


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(*_ADMIN, ApiKeyNotFound),
)
async def delete_api_key(
    key_id: Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The key's id.")],
    admin: AdminUser,
    session: SessionDep,
) -> None:
    """Admins only: revoke a key; its next request is refused."""
    await keys_service.delete_key(session, key_id=key_id)
