from __future__ import annotations

import httpx
import pytest

from tests.conftest import MakeAccount


async def test_signup_returns_201_with_the_user(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/users", json={"name": "Ann", "email": "Ann@Example.com", "password": "long enough"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Ann"
    assert body["email"] == "ann@example.com"
    assert body["is_admin"] is False
    assert isinstance(body["id"], int)
    assert "password" not in response.text
    assert "password_hash" not in body


async def test_signup_with_taken_email_returns_409(client: httpx.AsyncClient) -> None:
    payload = {"name": "Ann", "email": "ann@example.com", "password": "long enough"}
    assert (await client.post("/users", json=payload)).status_code == 201
    again = await client.post("/users", json={**payload, "email": "ANN@example.com"})
    assert again.status_code == 409
    assert again.json()["detail"] == "A user with this email already exists"
    assert again.json()["request_id"] == again.headers["x-request-id"]


async def test_get_unknown_user_returns_404_with_request_id(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await client.get("/users/999999", headers=account.headers)
    assert response.status_code == 404
    assert response.json() == {
        "detail": "User not found",
        "request_id": response.headers["x-request-id"],
    }


@pytest.mark.parametrize("query", ["skip=-1", "limit=0", "limit=101", "skip=abc"])
async def test_list_users_with_bad_paging_returns_422(
    client: httpx.AsyncClient, make_account: MakeAccount, query: str
) -> None:
    account = await make_account()
    response = await client.get(f"/users?{query}", headers=account.headers)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", query.split("=")[0]]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "a@example.com", "password": "long enough"}, "name"),
        ({"name": "", "email": "a@example.com", "password": "long enough"}, "name"),
        ({"name": "   ", "email": "a@example.com", "password": "long enough"}, "name"),
        ({"name": "x" * 101, "email": "a@example.com", "password": "long enough"}, "name"),
        ({"name": "nul\x00byte", "email": "a@example.com", "password": "long enough"}, "name"),
        ({"name": 42, "email": "a@example.com", "password": "long enough"}, "name"),
        ({"name": "Ann", "email": "not-an-email", "password": "long enough"}, "email"),
        ({"name": "Ann", "email": "a" * 250 + "@example.com", "password": "long enough"}, "email"),
        ({"name": "Ann", "email": ["a@example.com"], "password": "long enough"}, "email"),
        ({"name": "Ann", "email": "a@example.com", "password": "short"}, "password"),
        ({"name": "Ann", "email": "a@example.com", "password": "p" * 129}, "password"),
        ({"name": "Ann", "email": "a@example.com", "password": None}, "password"),
        (
            {"name": "Ann", "email": "a@example.com", "password": "long enough", "is_admin": True},
            "is_admin",
        ),
    ],
)
async def test_signup_with_bad_field_returns_422_naming_it(
    client: httpx.AsyncClient, payload: dict[str, object], field: str
) -> None:
    response = await client.post("/users", json=payload)
    assert response.status_code == 422, response.text
    body = response.json()
    assert ["body", field] in [error["loc"][:2] for error in body["detail"]]
    assert body["request_id"] == response.headers["x-request-id"]
    # Field errors never echo what was sent (it may be a password).
    assert "long enough" not in response.text


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[]", b'"a string"', b'{"name": "Ann",}', b"\xff\xfe"],
    ids=["broken", "empty", "array", "string", "trailing-comma", "not-utf8"],
)
async def test_signup_with_malformed_body_returns_422(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/users", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


async def test_list_users_hides_emails_of_others(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    ann = await make_account(name="Ann")
    await make_account(name="Bob")
    response = await client.get("/users", headers=ann.headers)
    assert response.status_code == 200
    users = response.json()
    assert [user["name"] for user in users] == ["Ann", "Bob"]
    assert users[0]["email"] == ann.email
    assert users[1] == {"id": users[1]["id"], "name": "Bob"}


async def test_list_users_shows_emails_to_admins(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    bob = await make_account(name="Bob")
    admin = await make_account(name="Admin", admin=True)
    users = (await client.get("/users", headers=admin.headers)).json()
    assert {user["email"] for user in users} == {bob.email, admin.email}
    one = (await client.get(f"/users/{bob.id}", headers=admin.headers)).json()
    assert one["email"] == bob.email


async def test_get_other_user_shows_only_id_and_name(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    ann = await make_account(name="Ann")
    bob = await make_account(name="Bob")
    response = await client.get(f"/users/{bob.id}", headers=ann.headers)
    assert response.json() == {"id": bob.id, "name": "Bob"}
    own = await client.get(f"/users/{ann.id}", headers=ann.headers)
    assert own.json()["email"] == ann.email


async def test_list_users_pages_with_skip_and_limit(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    accounts = [await make_account() for _ in range(5)]
    page = await client.get("/users?skip=1&limit=2", headers=accounts[0].headers)
    assert [user["id"] for user in page.json()] == [accounts[1].id, accounts[2].id]
    beyond = await client.get("/users?skip=2147483647", headers=accounts[0].headers)
    assert beyond.json() == []


@pytest.mark.parametrize("user_id", ["0", "-1", "abc", "99999999999999999999", "1.5"])
async def test_get_user_with_bad_id_returns_422(
    client: httpx.AsyncClient, make_account: MakeAccount, user_id: str
) -> None:
    account = await make_account()
    response = await client.get(f"/users/{user_id}", headers=account.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "user_id"]


async def test_users_routes_without_token_return_401(client: httpx.AsyncClient) -> None:
    for path in ("/users", "/users/1", "/me"):
        response = await client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    assert (await client.patch("/me", json={"name": "x"})).status_code == 401


async def test_patch_me_changes_name(client: httpx.AsyncClient, make_account: MakeAccount) -> None:
    account = await make_account()
    response = await client.patch("/me", headers=account.headers, json={"name": "  New Name "})
    assert response.status_code == 200
    assert response.json()["name"] == "New Name"
    assert (await client.get("/me", headers=account.headers)).json()["name"] == "New Name"


async def test_patch_me_with_empty_body_changes_nothing(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account(name="Same")
    response = await client.patch("/me", headers=account.headers, json={})
    assert response.status_code == 200
    assert response.json()["name"] == "Same"


async def test_patch_me_email_without_current_password_returns_422(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await client.patch("/me", headers=account.headers, json={"email": "n@example.com"})
    assert response.status_code == 422
    assert "current_password" in response.json()["detail"][0]["msg"]


async def test_patch_me_with_wrong_current_password_returns_403(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await client.patch(
        "/me",
        headers=account.headers,
        json={"email": "n@example.com", "current_password": "not the password"},
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "The current password is incorrect"


async def test_patch_me_to_taken_email_returns_409(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    ann = await make_account()
    bob = await make_account()
    response = await client.patch(
        "/me",
        headers=ann.headers,
        json={"email": bob.email.upper(), "current_password": ann.password},
    )
    assert response.status_code == 409
    assert (await client.get("/me", headers=ann.headers)).json()["email"] == ann.email


async def test_patch_me_changes_email_and_login_follows(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await client.patch(
        "/me",
        headers=account.headers,
        json={"email": "New@Example.com", "current_password": account.password},
    )
    assert response.json()["email"] == "new@example.com"
    login = await client.post(
        "/auth/token", data={"username": "new@example.com", "password": account.password}
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"name": ""}, "name"), ({"is_admin": True}, "is_admin"), ({"name": None, "x": 1}, "x")],
)
async def test_patch_me_with_bad_field_returns_422(
    client: httpx.AsyncClient, make_account: MakeAccount, payload: dict[str, object], field: str
) -> None:
    account = await make_account()
    response = await client.patch("/me", headers=account.headers, json=payload)
    assert response.status_code == 422
    assert ["body", field] in [error["loc"][:2] for error in response.json()["detail"]]


async def test_concurrent_signups_with_one_email_create_one_user(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    payload = {"name": "Ann", "email": "race@example.com", "password": "long enough"}
    results = await asyncio.gather(*(client.post("/users", json=payload) for _ in range(8)))
    assert sorted(r.status_code for r in results) == [201] + [409] * 7
