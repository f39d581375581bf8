"""Fixtures shared by every test: settings, the app on each database, clients, users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import databases
from townsquare.config import Settings
from townsquare.main import create_app
from townsquare.platform.database import Database

# Fails the run when a password, token or message body of the suite reaches a log.
pytest_plugins = ("tests.support.logscan",)

TEST_SECRET = "test-secret-key-that-is-long-enough-for-every-hmac-0123456789abcdef"


@pytest.fixture(scope="session")
async def sqlite_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "townsquare.db"
    url = f"sqlite+aiosqlite:///{path}"
    await databases.migrate(url)
    return url


@pytest.fixture(scope="session")
async def postgresql_database_url() -> AsyncIterator[str]:
    url = await databases.create_postgres_database()
    try:
        await databases.migrate(url)
        yield url
    finally:
        await databases.drop_postgres_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that uses the database runs once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_database_url"))


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "secret_key": TEST_SECRET,
        # Cheap hashing: the suite creates hundreds of users.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 64,
        # The suite signs up and logs in far faster than any client should; the rate
        # limiter has its own tests, which turn it back on.
        "rate_limit_enabled": False,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        database: Database = application.state.database
        await databases.empty_tables(database.engine)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class Account:
    id: int
    name: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


MakeAccount = Callable[..., Awaitable[Account]]


@pytest.fixture
def make_account(client: httpx.AsyncClient, app: FastAPI) -> MakeAccount:
    """Sign up and log in a new user; `admin=True` makes it an admin."""
    counter = 0

    async def make(
        *, name: str | None = None, password: str = "correct horse battery", admin: bool = False
    ) -> Account:
        nonlocal counter
        counter += 1
        name = name or f"User {counter}"
        email = f"user{counter}@example.com"
        created = await client.post(
            "/users", json={"name": name, "email": email, "password": password}
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        if admin:
            database: Database = app.state.database
            async with database.sessions() as session:
                from townsquare.users.models import User

                user = await session.get(User, user_id)
                assert user is not None
                user.is_admin = True
                await session.commit()
        token = await client.post("/auth/token", data={"username": email, "password": password})
        assert token.status_code == 200, token.text
        pair = token.json()
        return Account(user_id, name, email, password, pair["access_token"], pair["refresh_token"])

    return make
