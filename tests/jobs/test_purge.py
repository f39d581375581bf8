"""The periodic purge: spent refresh tokens, mailed tokens and ended sessions; old
idempotency keys; and messages past MESSAGE_RETENTION_DAYS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import Account, MakeAccount, make_settings
from tests.support import databases
from townsquare.config import Settings
from townsquare.jobs import PURGE_JOB
from townsquare.main import create_app
from townsquare.platform.database import Database


async def _purge(app: FastAPI) -> None:
    await app.state.jobs.enqueue(PURGE_JOB)
    await app.state.jobs.idle()


async def _scalar(app: FastAPI, sql: str) -> int:
    database: Database = app.state.database
    async with database.engine.connect() as connection:
        return int((await connection.execute(text(sql))).scalar_one())


async def _execute(app: FastAPI, sql: str) -> None:
    database: Database = app.state.database
    async with database.engine.begin() as connection:
        await connection.execute(text(sql))


async def _backdate(app: FastAPI, where: str, seconds: int) -> None:
    """Move matching messages `seconds` into the past."""
    if app.state.settings.is_sqlite:
        # The stored format, with the zone SQLAlchemy writes.
        shifted = f"strftime('%Y-%m-%d %H:%M:%f', created_at, '-{seconds} seconds')"
    else:
        shifted = f"created_at - INTERVAL '{seconds} seconds'"
    await _execute(app, f"UPDATE messages SET created_at = {shifted} WHERE {where}")  # noqa: S608


async def _refresh(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert response.status_code == 200, response.text
    account.refresh_token = response.json()["refresh_token"]
    account.access_token = response.json()["access_token"]


async def test_purge_leaves_no_spent_refresh_token_past_its_window(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    live = await make_account()
    spent_before = live.refresh_token
    await _refresh(client, live)  # spent_before is now used, still within its lifetime
    gone = await make_account()
    await client.post("/auth/logout", json={"refresh_token": gone.refresh_token})  # revoked
    old = await make_account()
    await _execute(
        app,
        f"UPDATE refresh_tokens SET expires_at = created_at WHERE user_id = {old.id}",  # noqa: S608
    )
    await _purge(app)

    assert (
        await _scalar(app, "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NOT NULL") == 0
    )
    assert (
        await _scalar(
            app, "SELECT count(*) FROM refresh_tokens WHERE expires_at <= CURRENT_TIMESTAMP"
        )
        == 0
    )
    # The live login still refreshes, and its spent token is still there to catch a
    # stolen copy: presenting it ends the login.
    await _refresh(client, live)
    reuse = await client.post("/auth/refresh", json={"refresh_token": spent_before})
    assert reuse.status_code == 401
    assert "already used" in reuse.json()["detail"]


async def test_purge_forgets_idempotency_keys_past_their_window(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    owner = await make_account()
    await client.post("/rooms", json={"name": "keys"}, headers=owner.headers)

    async def post(key: str, body: str) -> httpx.Response:
        return await client.post(
            "/rooms/keys/messages",
            json={"body": body},
            headers={**owner.headers, "Idempotency-Key": key},
        )

    assert (await post("old", "first")).status_code == 201
    assert (await post("new", "second")).status_code == 201
    window = app.state.settings.idempotency_key_ttl_seconds
    await _backdate(app, "idempotency_key = 'old'", window + 60)
    await _purge(app)

    assert await _scalar(app, "SELECT count(*) FROM messages WHERE idempotency_key = 'old'") == 0
    assert await _scalar(app, "SELECT count(*) FROM messages WHERE idempotency_key = 'new'") == 1
    # Within the window a retry is still the first message; past it, a new one.
    replayed = await post("new", "second")
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    fresh = await post("old", "first")
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["seq"] == 3


@pytest.fixture
async def retention_app(database_url: str) -> AsyncIterator[FastAPI]:
    settings: Settings = make_settings(database_url=database_url, message_retention_days=2)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        await databases.empty_tables(application.state.database.engine)


async def test_purge_with_retention_deletes_older_messages_only(
    retention_app: FastAPI,
) -> None:
    app = retention_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        await client.post(
            "/users", json={"name": "R", "email": "r@example.com", "password": "p" * 10}
        )
        token = await client.post(
            "/auth/token", data={"username": "r@example.com", "password": "p" * 10}
        )
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        await client.post("/rooms", json={"name": "kept"}, headers=headers)
        for body in ("ancient", "recent"):
            await client.post("/rooms/kept/messages", json={"body": body}, headers=headers)
        await _backdate(app, "body = 'ancient'", 3 * 86400)
        await _purge(app)
        history = await client.get("/rooms/kept/messages", headers=headers)
        assert [(m["seq"], m["body"]) for m in history.json()] == [(2, "recent")]
        # Numbering goes on after what was deleted.
        third = await client.post("/rooms/kept/messages", json={"body": "next"}, headers=headers)
        assert third.json()["seq"] == 3


def test_message_retention_is_off_by_default() -> None:
    assert make_settings().message_retention_days is None
    assert make_settings(message_retention_days="").message_retention_days is None
