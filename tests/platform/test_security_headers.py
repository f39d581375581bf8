from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI

from tests.platform.conftest import serve_app


async def test_response_in_development_has_security_headers_without_hsts(
    custom_app: Callable[..., FastAPI],
) -> None:
    async with serve_app(custom_app(env="development")) as client:
        response = await client.get("/health")
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "strict-transport-security" not in headers


async def test_response_in_production_has_hsts(custom_app: Callable[..., FastAPI]) -> None:
    async with serve_app(custom_app(env="production", smtp_url="smtp://127.0.0.1:2525")) as client:
        response = await client.get("/health")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_error_response_also_has_security_headers(
    custom_app: Callable[..., FastAPI],
) -> None:
    async with serve_app(custom_app()) as client:
        response = await client.get("/me")
    assert response.status_code == 401
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_docs_page_in_development_is_served_from_local_assets_under_the_strict_csp(
    custom_app: Callable[..., FastAPI],
) -> None:
    async with serve_app(custom_app(env="development")) as client:
        docs = await client.get("/docs")
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        style = await client.get("/docs/assets/swagger-ui.css")
    assert docs.status_code == 200
    assert "<script>" not in docs.text  # started from a file, not an inline script
    assert "https://" not in docs.text  # nothing from a CDN
    csp = docs.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.text
    assert style.status_code == 200


@pytest.mark.parametrize(
    "path", ["/docs", "/docs/assets/swagger-ui.css", "/openapi.json", "/asyncapi.json"]
)
async def test_docs_in_production_are_not_served(
    custom_app: Callable[..., FastAPI], path: str
) -> None:
    async with serve_app(custom_app(env="production", smtp_url="smtp://127.0.0.1:2525")) as client:
        response = await client.get(path)
    assert response.status_code == 404


async def test_openapi_in_development_is_served(custom_app: Callable[..., FastAPI]) -> None:
    async with serve_app(custom_app(env="development")) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "/ready" in response.json()["paths"]
