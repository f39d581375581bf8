"""The app as a whole: route contract, the error envelope, configuration."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Sequence

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.routing import BaseRoute

from tests.conftest import make_settings
from townsquare.config import DEV_SECRET_KEY
from townsquare.main import create_app


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # Newer FastAPI keeps included routers as one node holding the original router.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def test_every_route_is_async_and_declares_its_response() -> None:
    app = create_app(make_settings())
    routes = list(_api_routes(app.routes))
    assert routes
    for route in routes:
        assert inspect.iscoroutinefunction(route.endpoint), f"{route.path} is a plain def"
        if route.status_code == 204:
            continue
        assert route.response_model is not None, f"{route.path} has no response_model"


def test_every_request_schema_field_has_a_description() -> None:
    schema = create_app(make_settings()).openapi()
    for name, component in schema["components"]["schemas"].items():
        if name.startswith(("HTTPValidationError", "ValidationError", "Body_")):
            continue  # FastAPI's own models
        for field, spec in component.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


async def test_unknown_route_returns_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "Not Found",
        "request_id": response.headers["x-request-id"],
    }


async def test_wrong_method_returns_405_envelope(client: httpx.AsyncClient) -> None:
    response = await client.delete("/users")
    assert response.status_code == 405
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_unexpected_error_returns_500_envelope_without_internals(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> dict[str, str]:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/explode", explode, response_model=dict[str, str])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with caplog.at_level(logging.ERROR):
            response = await client.get("/explode", headers={"X-Request-ID": "trace-me-12345"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "request_id": "trace-me-12345"}
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"] == "trace-me-12345"
    assert any(
        "secret internal detail" in record.exc_text for record in caplog.records if record.exc_text
    )


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("abcdef12-3456", True), ("short", False), ("has space in it", False), ("x" * 200, False)],
)
async def test_request_id_is_kept_only_when_well_formed(
    client: httpx.AsyncClient, incoming: str, kept: bool
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": incoming})
    assert (response.headers["x-request-id"] == incoming) is kept
    assert len(response.headers["x-request-id"]) >= 8


@pytest.mark.parametrize("secret", [None, DEV_SECRET_KEY, "too-short"])
def test_production_settings_refuse_a_weak_secret(secret: str | None) -> None:
    overrides = {"env": "production"}
    if secret is not None:
        overrides["secret_key"] = secret
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make_settings(**overrides) if secret is not None else _production_without_secret()


def _production_without_secret() -> None:
    from townsquare.config import Settings

    Settings(_env_file=None, env="production")


def test_production_hides_the_docs() -> None:
    app = create_app(make_settings(env="production", secret_key="s" * 48))
    paths = {getattr(route, "path", None) for route in app.routes}
    assert not paths & {"/docs", "/redoc", "/openapi.json"}


def test_allowed_origins_are_split_on_commas() -> None:
    settings = make_settings(allowed_origins="https://a.example, https://b.example,")
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
