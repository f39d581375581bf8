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
