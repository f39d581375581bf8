"""The real thing: `townsquare migrate`, `create-admin` and `serve` as separate processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.support import databases
from tests.support.server import run_server

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: nothing created, nothing migrated."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    url = await databases.create_postgres_database()
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "townsquare.cli", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env(database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "ENV": "test",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
    }


def test_migrate_then_serve_supports_signup_token_and_me(
    fresh_database_url: str, tmp_path: Path
) -> None:
    env = _env(fresh_database_url)
    migrated = _cli(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    admin = _cli(
        env,
        "create-admin",
        "--email",
        "Root@Example.com",
        "--password-stdin",
        stdin="admin password 1\n",
    )
    assert admin.returncode == 0, admin.stderr
    assert "created admin" in admin.stdout

    with (
        run_server(env, tmp_path / "server.log") as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        created = http.post(
            "/users", json={"name": "Ann", "email": "ann@example.com", "password": "long enough"}
        )
        assert created.status_code == 201, created.text
        token = http.post(
            "/auth/token", data={"username": "ann@example.com", "password": "long enough"}
        )
        assert token.status_code == 200
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        me = http.get("/me", headers=bearer)
        assert me.json()["email"] == "ann@example.com"

        root = http.post(
            "/auth/token", data={"username": "root@example.com", "password": "admin password 1"}
        )
        root_bearer = {"Authorization": f"Bearer {root.json()['access_token']}"}
        everyone = http.get("/users", headers=root_bearer).json()
        assert {user["email"] for user in everyone} == {"root@example.com", "ann@example.com"}
        assert http.get("/me", headers=root_bearer).json()["is_admin"] is True

        missing = http.get("/users/12345", headers=bearer)
        assert missing.status_code == 404
        assert missing.json() == {
            "detail": "User not found",
            "request_id": missing.headers["x-request-id"],
        }
        assert http.get("/health").json() == {"status": "healthy"}
    assert "Traceback" not in server.log()


def test_sqlite_default_migrates_itself_on_first_start(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'auto.db'}"
    with run_server(_env(url), tmp_path / "server.log") as server:
        created = httpx.post(
            f"{server.base_url}/users",
            json={"name": "Ann", "email": "ann@example.com", "password": "long enough"},
        )
        assert created.status_code == 201
    assert (tmp_path / "auto.db").exists()


def test_create_admin_promotes_an_existing_user(fresh_database_url: str) -> None:
    env = _env(fresh_database_url)
    assert _cli(env, "migrate").returncode == 0
    first = _cli(
        env, "create-admin", "--email", "a@example.com", "--password-stdin", stdin="password one\n"
    )
    assert first.returncode == 0, first.stderr
    again = _cli(
        env, "create-admin", "--email", "A@example.com", "--password-stdin", stdin="password one\n"
    )
    assert again.returncode == 0
    assert "is now an admin" in again.stdout


def test_create_admin_with_bad_input_exits_2(tmp_path: Path) -> None:
    env = _env(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    result = _cli(
        env, "create-admin", "--email", "not-an-email", "--password-stdin", stdin="password one\n"
    )
    assert result.returncode == 2
    assert "email" in result.stderr


def test_cli_in_production_with_weak_secret_exits_2(tmp_path: Path) -> None:
    env = {
        **_env(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"),
        "ENV": "production",
        "SECRET_KEY": "short",
    }
    result = _cli(env, "serve")
    assert result.returncode == 2
    assert "SECRET_KEY must be set" in result.stderr
