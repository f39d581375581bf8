from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest

from tests.conftest import TEST_SECRET, Account, MakeAccount


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(account_id: int, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": str(account_id),
        "ver": 0,
        "iat": now,
        "exp": now + 300,
        "iss": "townsquare",
        "aud": "townsquare",
        **overrides,
    }


async def _assert_401(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_login_with_right_password_returns_token_pair(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await client.post(
        "/auth/token", data={"username": account.email.upper(), "password": account.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"]
    me = await client.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["email"] == account.email


@pytest.mark.parametrize(
    ("username", "password"),
    [("user1@example.com", "wrong password"), ("nobody@example.com", "correct horse battery")],
)
async def test_login_with_wrong_credentials_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount, username: str, password: str
) -> None:
    await make_account()
    response = await client.post("/auth/token", data={"username": username, "password": password})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"] == "Incorrect email or password"


async def test_login_without_form_fields_returns_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/token", data={"username": "a@example.com"})
    assert response.status_code == 422
    assert ["body", "password"] in [error["loc"] for error in response.json()["detail"]]


async def test_me_without_token_returns_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_token_with_alg_none_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(account.id))}."
    await _assert_401(client, unsigned)


async def test_token_signed_with_another_key_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    forged = jwt.encode(_claims(account.id), "another-key-" * 4, algorithm="HS256")
    await _assert_401(client, forged)


async def test_expired_token_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    past = int(time.time()) - 3600
    expired = jwt.encode(
        _claims(account.id, iat=past - 900, exp=past), TEST_SECRET, algorithm="HS256"
    )
    await _assert_401(client, expired)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "another-service"},
        {"iss": "someone-else"},
        {"sub": "not-a-number"},
        {"ver": "0"},
    ],
    ids=["audience", "issuer", "subject", "version-type"],
)
async def test_token_with_wrong_claim_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount, overrides: dict[str, object]
) -> None:
    account = await make_account()
    token = jwt.encode(_claims(account.id, **overrides), TEST_SECRET, algorithm="HS256")
    await _assert_401(client, token)


@pytest.mark.parametrize("missing", ["exp", "iat", "aud", "iss", "sub", "ver"])
async def test_token_without_required_claim_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount, missing: str
) -> None:
    account = await make_account()
    claims = _claims(account.id)
    del claims[missing]
    await _assert_401(client, jwt.encode(claims, TEST_SECRET, algorithm="HS256"))


async def test_token_of_other_algorithm_with_right_key_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    token = jwt.encode(_claims(account.id), TEST_SECRET, algorithm="HS512")
    await _assert_401(client, token)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 5000])
async def test_malformed_token_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount, token: str
) -> None:
    await make_account()
    await _assert_401(client, token)


async def test_token_of_deleted_user_returns_401(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    ghost = jwt.encode(_claims(account.id + 1000), TEST_SECRET, algorithm="HS256")
    await _assert_401(client, ghost)


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_the_refresh_token(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    response = await _refresh(client, account.refresh_token)
    assert response.status_code == 200
    pair = response.json()
    assert pair["refresh_token"] != account.refresh_token
    me = await client.get("/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200
    # And the new one works once more.
    assert (await _refresh(client, pair["refresh_token"])).status_code == 200


async def test_reused_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    first = (await _refresh(client, account.refresh_token)).json()
    second = (await _refresh(client, first["refresh_token"])).json()

    # The first token, already spent, comes back (a stolen copy, say).
    reuse = await _refresh(client, account.refresh_token)
    assert reuse.status_code == 401
    assert "revoked" in reuse.json()["detail"]

    # Every token of that login is now dead, including the newest one.
    assert (await _refresh(client, second["refresh_token"])).status_code == 401
    assert (await _refresh(client, first["refresh_token"])).status_code == 401


async def test_reuse_in_one_family_leaves_other_logins_alone(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    other_login = await client.post(
        "/auth/token", data={"username": account.email, "password": account.password}
    )
    other_refresh = other_login.json()["refresh_token"]
    await _refresh(client, account.refresh_token)
    await _refresh(client, account.refresh_token)  # reuse: revokes the first family only
    assert (await _refresh(client, other_refresh)).status_code == 200


async def test_concurrent_refresh_with_one_token_lets_at_most_one_win(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    import asyncio

    account = await make_account()
    results = await asyncio.gather(*(_refresh(client, account.refresh_token) for _ in range(5)))
    assert [r.status_code for r in results].count(200) <= 1
    assert all(r.status_code in (200, 401) for r in results)


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": "x" * 300}])
async def test_refresh_with_bad_body_returns_422(
    client: httpx.AsyncClient, body: dict[str, str]
) -> None:
    response = await client.post("/auth/refresh", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "refresh_token"]


async def test_refresh_with_unknown_token_returns_401(client: httpx.AsyncClient) -> None:
    response = await _refresh(client, "never-issued")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_logout_revokes_the_refresh_token(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    rotated = (await _refresh(client, account.refresh_token)).json()["refresh_token"]
    response = await client.post("/auth/logout", json={"refresh_token": rotated})
    assert response.status_code == 204
    assert (await _refresh(client, rotated)).status_code == 401


async def test_logout_with_unknown_token_returns_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/logout", json={"refresh_token": "never-issued"})
    assert response.status_code == 401


async def test_password_change_ends_existing_access_tokens(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    account: Account = await make_account()
    changed = await client.patch(
        "/me",
        headers=account.headers,
        json={"password": "a brand new secret", "current_password": account.password},
    )
    assert changed.status_code == 200
    assert (await client.get("/me", headers=account.headers)).status_code == 401
    assert (await _refresh(client, account.refresh_token)).status_code == 401
    relogin = await client.post(
        "/auth/token", data={"username": account.email, "password": "a brand new secret"}
    )
    assert relogin.status_code == 200
