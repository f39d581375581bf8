from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from tests.conftest import make_settings
from tests.platform.conftest import serve_app

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization",
}


async def test_preflight_from_allowed_origin_is_allowed(
    custom_app: Callable[..., FastAPI],
) -> None:
    app = custom_app(allowed_origins="https://app.example.com,https://admin.example.com")
    async with serve_app(app) as client:
        response = await client.options(
            "/users", headers={"Origin": "https://admin.example.com", **PREFLIGHT}
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://admin.example.com"
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_request_from_unlisted_origin_gets_no_cors_headers(
    custom_app: Callable[..., FastAPI],
) -> None:
    app = custom_app(allowed_origins="https://app.example.com")
    async with serve_app(app) as client:
        preflight = await client.options(
            "/users", headers={"Origin": "https://evil.example.net", **PREFLIGHT}
        )
        simple = await client.get("/health", headers={"Origin": "https://evil.example.net"})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_wildcard_origin_without_credentials_never_allows_credentials(
    custom_app: Callable[..., FastAPI],
) -> None:
    async with serve_app(custom_app(allowed_origins="*")) as client:
        response = await client.get("/health", headers={"Origin": "https://any.example.org"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


def test_settings_with_wildcard_origin_and_credentials_are_refused() -> None:
    with pytest.raises(ValidationError, match="cannot be combined"):
        make_settings(allowed_origins="*", cors_allow_credentials=True)
