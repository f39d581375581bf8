"""The app as a whole: schema descriptions, the error envelope, configuration."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from tests.conftest import make_settings
from townsquare.config import DEV_SECRET_KEY
from townsquare.main import create_app


def test_every_request_schema_field_has_a_description() -> None:
    schema = create_app(make_settings()).openapi()
    for name, component in schema["components"]["schemas"].items():
        if name.startswith(("HTTPValidationError", "ValidationError", "Body_")):
            continue  # FastAPI's own models
        for field, spec in component.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


async def test_wrong_method_returns_405_envelope(client: httpx.AsyncClient) -> None:
    response = await client.delete("/users")
    assert response.status_code == 405
    assert response.json()["request_id"] == response.headers["x-request-id"]


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
    app = create_app(
        make_settings(env="production", secret_key="s" * 48, smtp_url="smtp://127.0.0.1:2525")
    )
    paths = {getattr(route, "path", None) for route in app.routes}
    assert not paths & {"/docs", "/redoc", "/openapi.json"}


def test_allowed_origins_are_split_on_commas() -> None:
    settings = make_settings(allowed_origins="https://a.example, https://b.example,")
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]


def test_settings_with_several_workers_need_a_shared_broker() -> None:
    with pytest.raises(ValidationError, match="needs a broker shared by the workers"):
        make_settings(web_concurrency=2)
    assert make_settings(web_concurrency=4, redis_url="redis://x:6379/0").web_concurrency == 4


@pytest.mark.parametrize(
    ("budget", "workers", "pool", "overflow", "expected"),
    [
        (20, 2, 10, 20, (10, 0)),  # 10 each: the pool, no overflow
        (20, 1, 10, 20, (10, 10)),  # 20: the pool and half the overflow
        (100, 2, 10, 20, (10, 20)),  # 50 each: more than pool + overflow need
        (9, 4, 10, 20, (2, 0)),  # 2 each
    ],
)
def test_database_pool_is_cut_to_each_workers_share_of_the_budget(
    budget: int, workers: int, pool: int, overflow: int, expected: tuple[int, int]
) -> None:
    settings = make_settings(
        database_max_connections=budget,
        web_concurrency=workers,
        redis_url="redis://x:6379/0",
        database_pool_size=pool,
        database_max_overflow=overflow,
    )
    assert settings.database_pool() == expected
    assert sum(settings.database_pool()) * workers <= budget


def test_database_budget_below_one_connection_per_worker_is_refused() -> None:
    with pytest.raises(ValidationError, match="every worker needs at least one"):
        make_settings(database_max_connections=2, web_concurrency=3, redis_url="redis://x/0")
