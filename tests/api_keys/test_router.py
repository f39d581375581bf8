"""API keys: created by admins, post into their rooms as their name, refused elsewhere."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from tests.conftest import Account, MakeAccount
from townsquare.auth.dependencies import current_user, oauth2_scheme
from townsquare.auth.models import RefreshToken
from townsquare.auth.tokens import TokenCodec, hash_refresh_token
from townsquare.platform.database import Database, utcnow

POST_MESSAGE = ("POST", "/rooms/{name}/messages")


async def _room(client: httpx.AsyncClient, owner: Account, name: str, private: bool = False) -> str:
    response = await client.post(
        "/rooms", json={"name": name, "private": private}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return name


async def _key(
    client: httpx.AsyncClient, admin: Account, rooms: list[str], name: str = "CI bot"
) -> dict[str, Any]:
    response = await client.post(
        "/api-keys", json={"name": name, "rooms": rooms}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


async def test_key_posts_into_its_room_as_its_name(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    room = await _room(client, admin, "deploys", private=True)
    key = await _key(client, admin, [room])
    assert key["key"].startswith("tsk_")
    assert key["rooms"] == [room]

    posted = await client.post(
        f"/rooms/{room}/messages", json={"body": "build 42 is green"}, headers=_bearer(key)
    )
    assert posted.status_code == 201, posted.text
    message = posted.json()
    assert message["author"] == {"id": key["author_id"], "name": "CI bot"}
    history = await client.get(f"/rooms/{room}/messages", headers=admin.headers)
    assert [m["body"] for m in history.json()] == ["build 42 is green"]
    assert history.json()[0]["author"]["name"] == "CI bot"


async def test_key_retry_with_idempotency_key_is_stored_once(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    room = await _room(client, admin, "alerts")
    key = await _key(client, admin, [room])
    headers = {**_bearer(key), "Idempotency-Key": "alert-7"}
    first = await client.post(f"/rooms/{room}/messages", json={"body": "disk"}, headers=headers)
    second = await client.post(f"/rooms/{room}/messages", json={"body": "disk"}, headers=headers)
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_key_cannot_post_into_other_rooms(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    mine = await _room(client, admin, "mine")
    other = await _room(client, admin, "other")
    key = await _key(client, admin, [mine])
    for room in (other, "does-not-exist"):
        response = await client.post(
            f"/rooms/{room}/messages", json={"body": "hi"}, headers=_bearer(key)
        )
        assert response.status_code == 404
        assert response.json()["detail"] == "Room not found"


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "general" if m.group(0) == "{name}" else "1", path)


def _reads_bearer(dependant: Dependant) -> bool:
    return dependant.call in (oauth2_scheme, current_user) or any(
        _reads_bearer(d) for d in dependant.dependencies
    )


def _authenticated_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes: list[tuple[str, str]] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        if not _reads_bearer(route.dependant):
            continue
        routes.extend((method, route.path) for method in sorted(route.methods or ()))
    return routes


async def test_key_is_refused_on_every_other_route(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    await _room(client, admin, "general")
    key = await _key(client, admin, ["general"])
    routes = _authenticated_routes(app)
    assert POST_MESSAGE in routes
    assert len(routes) >= 15  # the check does walk the app
    for method, path in routes:
        if (method, path) == POST_MESSAGE:
            continue
        response = await client.request(method, _fill(path), json={}, headers=_bearer(key))
        where = f"{method} {path}"
        assert response.status_code == 401, f"{where}: {response.status_code} {response.text}"
        assert "API keys are accepted only by" in response.json()["detail"], where
        assert response.headers["WWW-Authenticate"] == "Bearer", where


async def test_revoked_key_stops_working_at_once(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    room = await _room(client, admin, "ops")
    key = await _key(client, admin, [room])
    url = f"/rooms/{room}/messages"
    assert (await client.post(url, json={"body": "1"}, headers=_bearer(key))).status_code == 201
    deleted = await client.delete(f"/api-keys/{key['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    refused = await client.post(url, json={"body": "2"}, headers=_bearer(key))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "Invalid or revoked API key"
    # What it posted keeps its author.
    history = (await client.get(url, headers=admin.headers)).json()
    assert [(m["body"], m["author"]["name"]) for m in history] == [("1", "CI bot")]
    again = await client.delete(f"/api-keys/{key['id']}", headers=admin.headers)
    assert again.status_code == 404


async def test_listing_keys_shows_no_secret(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    await _room(client, admin, "a")
    await _room(client, admin, "b")
    key = await _key(client, admin, ["b", "a", "b"], name="Grafana")
    listed = await client.get("/api-keys", headers=admin.headers)
    assert listed.status_code == 200
    [entry] = listed.json()
    assert entry["name"] == "Grafana"
    assert entry["rooms"] == ["a", "b"]
    assert key["key"] not in listed.text
    assert "key" not in entry
    assert key["key"].startswith(entry["prefix"])


async def test_only_admins_manage_keys(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    user = await make_account()
    await _room(client, admin, "x")
    key = await _key(client, admin, ["x"])
    create = await client.post(
        "/api-keys", json={"name": "n", "rooms": ["x"]}, headers=user.headers
    )
    assert create.status_code == 403
    assert (await client.get("/api-keys", headers=user.headers)).status_code == 403
    assert (await client.delete(f"/api-keys/{key['id']}", headers=user.headers)).status_code == 403


async def test_create_key_for_unknown_room_names_it(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    await _room(client, admin, "real")
    response = await client.post(
        "/api-keys", json={"name": "n", "rooms": ["real", "ghost"]}, headers=admin.headers
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "Room not found: ghost"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n", "rooms": []},
        {"name": "", "rooms": ["a"]},
        {"name": "n", "rooms": ["Bad Name"]},
    ],
)
async def test_create_key_with_bad_body_returns_422(
    client: httpx.AsyncClient, make_account: MakeAccount, body: dict[str, Any]
) -> None:
    admin = await make_account(admin=True)
    assert (await client.post("/api-keys", json=body, headers=admin.headers)).status_code == 422


async def test_service_account_of_a_key_is_not_listed_and_cannot_log_in(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    admin = await make_account(admin=True)
    await _room(client, admin, "x")
    key = await _key(client, admin, ["x"])
    users = (await client.get("/users", headers=admin.headers)).json()
    assert key["author_id"] not in {user["id"] for user in users}
    shown = await client.get(f"/users/{key['author_id']}", headers=admin.headers)
    assert shown.status_code == 200
    assert shown.json()["name"] == "CI bot"


async def test_user_token_of_a_service_account_is_refused(
    app: FastAPI, client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    # A service account never gets a user's token (it has no password to log in with);
    # one signed for it anyway, for a login that is open, stands for no one.
    admin = await make_account(admin=True)
    await _room(client, admin, "x")
    key = await _key(client, admin, ["x"])
    family_id = uuid.uuid4().hex
    now = utcnow()
    database: Database = app.state.database
    async with database.sessions() as session:
        session.add(
            RefreshToken(
                user_id=key["author_id"],
                family_id=family_id,
                token_hash=hash_refresh_token(uuid.uuid4().hex),
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
        await session.commit()
    codec: TokenCodec = app.state.tokens
    token = codec.encode_access(
        user_id=key["author_id"], token_version=0, session_id=family_id, now=now
    )
    for method, path in [("GET", "/me"), ("GET", "/users"), ("POST", "/rooms/x/messages")]:
        response = await client.request(
            method, path, json={"body": "hi"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, (path, response.text)
