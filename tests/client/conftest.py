"""A real server with short heartbeats, and signed-up users with their tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.client.servers import SERVER_ENV
from tests.support.server import ServerProcess, run_server
from townsquare.auth.schemas import TokenPair
from townsquare.client import Api

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
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
