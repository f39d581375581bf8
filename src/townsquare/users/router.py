from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from sqlalchemy import RowMapping

from townsquare.auth import accounts
from townsquare.auth import service as auth_service
from townsquare.auth.dependencies import AdminUser, CurrentUser, Passwords, Revocations
from townsquare.auth.exceptions import AdminRequired, InvalidToken
from townsquare.auth.principals import Principal
from townsquare.auth.revocations import AccountChange, ChangeKind
from townsquare.platform.dependencies import (
    DatabaseDep,
    JobsDep,
    ReaderDep,
    SessionDep,
    SettingsDep,
)
from townsquare.platform.errors import responses
from townsquare.platform.jobs import JobsUnavailable
from townsquare.platform.responses import ModelResponse
from townsquare.users import service as users_service
from townsquare.users.exceptions import (
    CannotDemoteSelf,
    EmailAlreadyRegistered,
    LastAdmin,
    UserNotFound,
    WrongCurrentPassword,
)
from townsquare.users.models import User
from townsquare.users.schemas import (
    MAX_DB_INT,
    UserAdminUpdate,
    UserCreate,
    UserPublic,
    UserRead,
    UserUpdate,
)

logger = logging.getLogger(__name__)

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
async def create_user(
    body: UserCreate,
    session: SessionDep,
    passwords: Passwords,
    jobs: JobsDep,
    settings: SettingsDep,
) -> UserRead:
    """Sign up. Anyone may call this; the new account is a regular user, and a
    verification mail goes to `email`."""
    user = await users_service.create_user(
        session,
        name=body.name,
        email=body.email,
        password_hash=await passwords.hash(body.password),
    )
    await _send_verification(session, jobs, settings, user)
    return UserRead.model_validate(user)


async def _send_verification(
    session: SessionDep, jobs: JobsDep, settings: SettingsDep, user: User
) -> None:
    # The account exists either way; without the job queue, the owner asks for another
    # mail later (POST /me/verification-email).
    try:
        await accounts.send_verification(session, jobs, settings, user=user)
    except JobsUnavailable:
        logger.warning("verification mail for user %s not queued", user.id)


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
) -> ModelResponse:
    return ModelResponse(_visible(await users_service.read_user(database, user_id), viewer))


@router.get("/me", response_model=UserRead, responses=_AUTH)
async def read_me(user: CurrentUser, database: DatabaseDep) -> ModelResponse:
    me = _visible(await users_service.read_user(database, user.id), user)
    assert isinstance(me, UserRead)  # one's own account is always shown in full
    return ModelResponse(me)


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
    jobs: JobsDep,
    settings: SettingsDep,
) -> UserRead:
    """Change one's name, email or password. Email and password changes need
    `current_password`; a new password ends every session, this one included. A new
    email is unverified until the link mailed to it is followed."""
    user = await users_service.get_user(session, caller.id)
    previous_email = user.email
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
    if updated.email != previous_email:
        await _send_verification(session, jobs, settings, updated)
    return UserRead.model_validate(updated)


@router.patch(
    "/users/{user_id}",
    response_model=UserRead,
    responses=responses(InvalidToken, AdminRequired, CannotDemoteSelf, UserNotFound, LastAdmin),
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
    # Before any other write: no change may leave the service without an active admin.
    await users_service.check_rights_change(
        session, user, actor_id=admin.id, is_active=body.is_active, is_admin=body.is_admin
    )
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
