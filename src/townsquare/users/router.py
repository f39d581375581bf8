from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from sqlalchemy import RowMapping

from townsquare.auth import service as auth_service
from townsquare.auth.dependencies import AdminUser, CurrentUser, Passwords, Revocations
from townsquare.auth.exceptions import AdminRequired, InvalidToken
from townsquare.auth.principals import Principal
from townsquare.auth.revocations import AccountChange, ChangeKind
from townsquare.platform.dependencies import DatabaseDep, ReaderDep, SessionDep
from townsquare.platform.errors import responses
from townsquare.users import service as users_service
from townsquare.users.exceptions import (
    CannotDemoteSelf,
    EmailAlreadyRegistered,
    UserNotFound,
    WrongCurrentPassword,
)
from townsquare.users.schemas import (
    MAX_DB_INT,
    UserAdminUpdate,
    UserCreate,
    UserPublic,
    UserRead,
    UserUpdate,
)

router = APIRouter(tags=["users"])

_READ_FIELDS = tuple(UserRead.model_fields)

_AUTH = responses(InvalidToken)


def _visible(user: Mapping[str, Any] | RowMapping, viewer: Principal) -> UserRead | UserPublic:
    # Built without validation: every value comes from our own columns, checked when it
    # was written, and validating an email again (email-validator) on every read would
    # cost more than the database round trip.
    if viewer.is_admin or viewer.id == user["id"]:
        return UserRead.model_construct(**{name: user[name] for name in _READ_FIELDS})
    return UserPublic.model_construct(id=user["id"], name=user["name"])


@router.post(
    "/users",
    response_model=UserRead,
    status_code=status.HTTP_201_CREATED,
    responses=responses(EmailAlreadyRegistered),
)
async def create_user(body: UserCreate, session: SessionDep, passwords: Passwords) -> UserRead:
    """Sign up. Anyone may call this; the new account is a regular user."""
    user = await users_service.create_user(
        session,
        name=body.name,
        email=body.email,
        password_hash=await passwords.hash(body.password),
    )
    return UserRead.model_validate(user)


@router.get("/users", response_model=list[UserRead | UserPublic], responses=_AUTH)
async def list_users(
    viewer: CurrentUser,
    reader: ReaderDep,
    skip: Annotated[int, Query(ge=0, le=MAX_DB_INT, description="Users to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Most users to return.")] = 100,
) -> list[UserRead | UserPublic]:
    """Users by id. Emails are shown only to admins (and to each user for themself)."""
    users = await users_service.list_users(reader, skip=skip, limit=limit)
    return [_visible(user, viewer) for user in users]


@router.get(
    "/users/{user_id}",
    response_model=UserRead | UserPublic,
    responses=responses(InvalidToken, UserNotFound),
)
async def get_user(
    user_id: Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The user's id.")],
    viewer: CurrentUser,
    database: DatabaseDep,
) -> UserRead | UserPublic:
    return _visible(await users_service.read_user(database, user_id), viewer)


@router.get("/me", response_model=UserRead, responses=_AUTH)
async def read_me(user: CurrentUser, database: DatabaseDep) -> UserRead:
    me = _visible(await users_service.read_user(database, user.id), user)
    assert isinstance(me, UserRead)  # one's own account is always shown in full
    return me


@router.patch(
    "/me",
    response_model=UserRead,
    responses=responses(InvalidToken, WrongCurrentPassword, EmailAlreadyRegistered),
)
async def update_me(
    body: UserUpdate,
    caller: CurrentUser,
    session: SessionDep,
    passwords: Passwords,
    revocations: Revocations,
) -> UserRead:
    """Change one's name, email or password. Email and password changes need
    `current_password`; a new password ends every session, this one included."""
    user = await users_service.get_user(session, caller.id)
    sensitive = body.email is not None or body.password is not None
    # The schema already insists on current_password when `sensitive`.
    if sensitive and not await passwords.verify(user.password_hash, body.current_password or ""):
        raise WrongCurrentPassword()
    password_hash = None
    if body.password is not None:
        password_hash = await passwords.hash(body.password)
        # A new password ends every session, this one included: a thief holding an old
        # token loses it, and the owner logs in again with the new password.
        await auth_service.end_all_sessions(session, user)
    updated = await users_service.update_user(
        session, user, name=body.name, email=body.email, password_hash=password_hash
    )
    if password_hash is not None:
        await revocations.revoked(updated.id)
    else:
        await revocations.announce(AccountChange(updated.id, ChangeKind.ACCOUNT_UPDATED))
    return UserRead.model_validate(updated)


@router.patch(
    "/users/{user_id}",
    response_model=UserRead,
    responses=responses(InvalidToken, AdminRequired, CannotDemoteSelf, UserNotFound),
)
async def admin_update_user(
    user_id: Annotated[int, Path(ge=1, le=MAX_DB_INT, description="The user's id.")],
    body: UserAdminUpdate,
    admin: AdminUser,
    session: SessionDep,
    revocations: Revocations,
) -> UserRead:
    """Admins only: rename, disable or re-enable an account, or change admin rights.
    Disabling ends every session of the account on every instance."""
    user = await users_service.get_user(session, user_id)
    if user.id == admin.id and (body.is_active is False or body.is_admin is False):
        raise CannotDemoteSelf()
    disabling = body.is_active is False and user.is_active
    if disabling:
        await auth_service.end_all_sessions(session, user)
    updated = await users_service.set_account_flags(
        session, user, name=body.name, is_active=body.is_active, is_admin=body.is_admin
    )
    if disabling:
        await revocations.revoked(updated.id)
    else:
        await revocations.announce(AccountChange(updated.id, ChangeKind.ACCOUNT_UPDATED))
    return UserRead.model_validate(updated)
