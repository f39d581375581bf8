from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from townsquare.auth import service as auth_service
from townsquare.auth.exceptions import AdminRequired, InvalidToken
from townsquare.auth.passwords import PasswordHasher
from townsquare.auth.revocations import SessionRevocations
from townsquare.auth.tokens import TokenCodec
from townsquare.platform.context import set_user_id
from townsquare.platform.dependencies import SessionDep
from townsquare.platform.errors import Unauthorized
from townsquare.users.models import User

# auto_error=False: a missing header is answered by our own error envelope, not by
# FastAPI's default body.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def get_passwords(connection: HTTPConnection) -> PasswordHasher:
    return cast(PasswordHasher, connection.app.state.passwords)


def get_token_codec(connection: HTTPConnection) -> TokenCodec:
    return cast(TokenCodec, connection.app.state.tokens)


def get_revocations(connection: HTTPConnection) -> SessionRevocations:
    return cast(SessionRevocations, connection.app.state.revocations)


Passwords = Annotated[PasswordHasher, Depends(get_passwords)]
Revocations = Annotated[SessionRevocations, Depends(get_revocations)]
Tokens = Annotated[TokenCodec, Depends(get_token_codec)]


async def get_current_user(
    connection: HTTPConnection,
    session: SessionDep,
    codec: Tokens,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    if not token:
        raise Unauthorized()
    if len(token) > 4096:
        raise InvalidToken()
    user = await auth_service.user_for_access_token(session, codec, token)
    # For the access log and every log record of this request.
    connection.state.user_id = user.id
    set_user_id(user.id)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise AdminRequired()
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]
