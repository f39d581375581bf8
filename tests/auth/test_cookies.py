"""The refresh token as an httpOnly cookie, for the service's own web pages."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import MakeAccount, make_settings
from tests.platform.conftest import serve_app
from townsquare.auth.cookies import COOKIE_NAME
from townsquare.main import create_app

COOKIE_MODE = {"X-Refresh-Cookie": "true"}


async def _cookie_login(client: httpx.AsyncClient, make_account: MakeAccount) -> httpx.Response:
    account = await make_account()
    return await client.post(
        "/auth/token",
        data={"username": account.email, "password": account.password},
        headers=COOKIE_MODE,
    )


def _set_cookie(response: httpx.Response) -> str:
    return next(v for v in response.headers.get_list("set-cookie") if v.startswith(COOKIE_NAME))


async def test_login_in_cookie_mode_sets_an_httponly_strict_cookie_and_hides_the_token(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    response = await _cookie_login(client, make_account)
    assert response.status_code == 200
    body = response.json()
    assert body["refresh_token"] is None
    assert body["access_token"]
    cookie = _set_cookie(response).lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/auth" in cookie
    assert "max-age=" in cookie
    assert "secure" not in cookie  # plain http in tests; https (or production) adds it


async def test_login_over_https_sets_a_secure_cookie(
    app: FastAPI, make_account: MakeAccount
) -> None:
    account = await make_account()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as https:
        response = await https.post(
            "/auth/token",
            data={"username": account.email, "password": account.password},
            headers=COOKIE_MODE,
        )
    assert "secure" in _set_cookie(response).lower()


async def test_refresh_in_cookie_mode_rotates_the_cookie_and_reuse_ends_the_login(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    login = await _cookie_login(client, make_account)
    first = login.cookies[COOKIE_NAME]
    refreshed = await client.post("/auth/refresh", headers=COOKIE_MODE)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] is None
    second = refreshed.cookies[COOKIE_NAME]
    assert second != first
    # The spent cookie presented again is reuse: the whole login ends.
    client.cookies.set(COOKIE_NAME, first, path="/auth")
    reused = await client.post("/auth/refresh", headers=COOKIE_MODE)
    assert reused.status_code == 401
    client.cookies.set(COOKIE_NAME, second, path="/auth")
    assert (await client.post("/auth/refresh", headers=COOKIE_MODE)).status_code == 401


async def test_cookie_is_ignored_without_the_header(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    # A cross-site form post carries the cookie (were SameSite to fail) but cannot set
    # the header: the server does not read the cookie then.
    await _cookie_login(client, make_account)
    response = await client.post("/auth/refresh")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "refresh_token"]


async def test_refresh_in_cookie_mode_without_a_cookie_returns_401(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/auth/refresh", headers=COOKIE_MODE)
    assert response.status_code == 401


async def test_logout_in_cookie_mode_ends_the_login_and_clears_the_cookie(
    client: httpx.AsyncClient, make_account: MakeAccount
) -> None:
    login = await _cookie_login(client, make_account)
    token = login.cookies[COOKIE_NAME]
    response = await client.post("/auth/logout", headers=COOKIE_MODE)
    assert response.status_code == 204
    assert "max-age=0" in _set_cookie(response).lower()
    assert COOKIE_NAME not in client.cookies
    # The login is over: its token no longer refreshes.
    client.cookies.set(COOKIE_NAME, token, path="/auth")
    assert (await client.post("/auth/refresh", headers=COOKIE_MODE)).status_code == 401
    # Signing out again has nothing to end, and still answers 204.
    client.cookies.clear()
    assert (await client.post("/auth/logout", headers=COOKIE_MODE)).status_code == 204


async def test_cors_preflight_from_an_allowed_origin_never_allows_the_cookie_header(
    database_url: str,
) -> None:
    app = create_app(
        make_settings(
            database_url=database_url,
            allowed_origins="https://spa.example",
            cors_allow_credentials=True,
        )
    )
    async with serve_app(app) as client:
        preflight = {"Origin": "https://spa.example", "Access-Control-Request-Method": "POST"}
        plain = await client.options(
            "/auth/refresh", headers={**preflight, "Access-Control-Request-Headers": "content-type"}
        )
        cookie = await client.options(
            "/auth/refresh",
            headers={**preflight, "Access-Control-Request-Headers": "x-refresh-cookie"},
        )
    assert plain.status_code == 200  # the origin is allowed for the JSON API
    assert cookie.status_code == 400  # but another origin may never use the cookie


@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
async def test_json_clients_are_unchanged(
    client: httpx.AsyncClient, make_account: MakeAccount, path: str
) -> None:
    account = await make_account()
    response = await client.post(path, json={"refresh_token": account.refresh_token})
    assert response.status_code in (200, 204)
    assert "set-cookie" not in response.headers
    if path == "/auth/refresh":
        assert isinstance(response.json()["refresh_token"], str)
