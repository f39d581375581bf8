"""A real server with short heartbeats, and signed-up users with their tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.client.servers import SERVER_ENV
from tests.conftest import make_settings
from tests.support.server import ServerProcess, run_server
from townsquare.auth.schemas import TokenPair
from townsquare.auth.tokens import TokenCodec
from townsquare.client import Api

PASSWORD = "correct horse battery"


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the client tests (each test makes its own users and rooms)."""
    tmp = tmp_path_factory.mktemp("client-e2e")
    env = {**SERVER_ENV, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'e2e.db'}"}
    with run_server(env, tmp / "server.log") as process:
        yield process


@dataclass
class User:
    id: int
    name: str
    email: str
    tokens: TokenPair


MakeUser = Callable[..., Awaitable[User]]


async def sign_up(url: str, name: str = "User") -> User:
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    async with Api(url) as api:
        created = await api.signup(name=name, email=email, password=PASSWORD)
        tokens = await api.login(email, PASSWORD)
    return User(created.id, name, email, tokens)


async def new_room(url: str, owner: User, *, private: bool = False) -> str:
    async with Api(url, token=owner.tokens.access_token) as api:
        room = await api.create_room(f"r-{uuid.uuid4().hex[:10]}", private=private)
    return room.name


@pytest.fixture
async def http_api(server: ServerProcess) -> AsyncIterator[Api]:
    async with Api(server.base_url) as api:
        yield api


def mint_access_token(user: User, *, lifetime: float, issued_ago: float = 0.0) -> str:
    """An access token for `user` as the server would sign it, with a lifetime shorter
    than the server's minimum setting (or already expired)."""
    codec = TokenCodec(make_settings())
    codec.access_ttl = timedelta(seconds=lifetime)
    claims = jwt.decode(user.tokens.access_token, options={"verify_signature": False})
    issued = datetime.now(UTC) - timedelta(seconds=issued_ago)
    return codec.encode_access(
        user_id=user.id, token_version=claims["ver"], session_id=claims["sid"], now=issued
    )
