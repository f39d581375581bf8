from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Form
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowPassword, OAuthFlows
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import HTTPConnection

from townsquare.auth.exceptions import AdminRequired, InvalidToken
from townsquare.auth.passwords import PasswordHasher
from townsquare.auth.principals import Principal, PrincipalCache
from townsquare.auth.revocations import SessionRevocations
from townsquare.auth.tokens import TokenCodec
from townsquare.platform.context import set_user_id
from townsquare.platform.errors import Unauthorized

TOKEN_URL = "/auth/token"  # noqa: S105 (a route, not a secret)

# The bearer token as it came, for the one route that also takes API keys (rooms'
# `get_poster`). auto_error=False: a missing header is answered by our own error
# envelope, not by FastAPI's default body.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)

# Every dependency here is `async def`: FastAPI runs a plain `def` dependency in the
# thread pool, a hand-off that costs far more than reading an attribute.


async def get_passwords(connection: HTTPConnection) -> PasswordHasher:
    return cast(PasswordHasher, connection.app.state.passwords)


async def get_token_codec(connection: HTTPConnection) -> TokenCodec:
    return cast(TokenCodec, connection.app.state.tokens)


async def get_revocations(connection: HTTPConnection) -> SessionRevocations:
    return cast(SessionRevocations, connection.app.state.revocations)


Passwords = Annotated[PasswordHasher, Depends(get_passwords)]
Revocations = Annotated[SessionRevocations, Depends(get_revocations)]
Tokens = Annotated[TokenCodec, Depends(get_token_codec)]


async def get_login_form(
    username: Annotated[str, Form(description="The account's email.")],
    password: Annotated[str, Form(json_schema_extra={"format": "password"})],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    scope: Annotated[str, Form()] = "",
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
) -> OAuth2PasswordRequestForm:
    """The OAuth2 password-flow form. FastAPI's own class would be built in the thread
    pool (a class is not a coroutine); this reads the same fields."""
    return OAuth2PasswordRequestForm(
        grant_type=grant_type,
        username=username,
        password=password,
        scope=scope,
        client_id=client_id,
        client_secret=client_secret,
    )


LoginForm = Annotated[OAuth2PasswordRequestForm, Depends(get_login_form)]


async def get_current_user(connection: HTTPConnection, token: str | None) -> Principal:
    """The caller of `token`, from the per-process principal cache: no database read
    unless the login is not cached, went stale, or was touched by an account change."""
    if not token:
        raise Unauthorized()
    if len(token) > 4096:
        raise InvalidToken()
    state = connection.app.state
    claims = cast(TokenCodec, state.tokens).decode_access(token)
    user = await cast(PrincipalCache, state.principals).principal(claims)
    # For the access log and every log record of this request.
    connection.scope.setdefault("state", {})["user_id"] = user.id
    set_user_id(user.id)
    return user


class BearerCaller(SecurityBase):
    """The OAuth2 password flow's bearer token, documented in OpenAPI exactly as
    `oauth2_scheme`, whose dependency value is the caller itself.

    One dependency where there were two (the scheme, then a resolver depending on it):
    FastAPI's solving costs about as much per dependency as the cached caller lookup
    itself, on every authenticated request.
    """

    def __init__(self, token_url: str) -> None:
        self.model = OAuth2Model(flows=OAuthFlows(password=OAuthFlowPassword(tokenUrl=token_url)))
        self.scheme_name = oauth2_scheme.scheme_name

    async def __call__(self, connection: HTTPConnection) -> Principal:
        # What `oauth2_scheme` reads, read the same way.
        scheme, token = get_authorization_scheme_param(connection.headers.get("Authorization"))
        return await get_current_user(connection, token if scheme.lower() == "bearer" else None)


current_user = BearerCaller(TOKEN_URL)
CurrentUser = Annotated[Principal, Depends(current_user)]


async def get_admin_user(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise AdminRequired()
    return user


AdminUser = Annotated[Principal, Depends(get_admin_user)]
