"""The seed's anti-patterns, checked over every route the app serves."""

from __future__ import annotations

import inspect

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel


def test_every_route_is_async_with_a_response_model_and_strict_input_models(app: FastAPI) -> None:
    # FastAPI keeps included routers as one entry each; this walks into them.
    contexts = iter_route_contexts(app.routes)
    routes = [c.original_route for c in contexts if isinstance(c.original_route, APIRoute)]
    assert len(routes) >= 10
    checked_bodies = 0
    for route in routes:
        where = f"{sorted(route.methods or ())} {route.path}"
        assert inspect.iscoroutinefunction(route.endpoint), f"{where}: `def` route"
        # A route answering something other than JSON (204, Prometheus text) names its
        # response class instead of a model.
        explicit_class = getattr(route.response_class, "value", route.response_class) not in (
            JSONResponse,
        )
        assert route.response_model is not None or explicit_class, f"{where}: no response_model"
        for param in route.dependant.body_params:
            model = param.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                checked_bodies += 1
                assert model.model_config.get("extra") == "forbid", (
                    f"{where}: {model} allows extras"
                )
    assert checked_bodies >= 3  # signup, refresh, logout at least: the check does look


def test_every_dependency_is_async(app: FastAPI) -> None:
    # FastAPI runs a plain `def` dependency (or a class) in the thread pool: a hand-off
    # per request that costs more than the trivial dependencies themselves.
    contexts = iter_route_contexts(app.routes)
    routes = [c.original_route for c in contexts if isinstance(c.original_route, APIRoute)]
    checked = 0
    for route in routes:
        pending = list(route.dependant.dependencies)
        while pending:
            dependant = pending.pop()
            pending.extend(dependant.dependencies)
            call = dependant.call
            if call is None:
                continue
            where = f"{sorted(route.methods or ())} {route.path}: {call!r}"
            assert not inspect.isclass(call), f"{where} is a class, built in the thread pool"
            target = call if inspect.isfunction(call) else type(call).__call__
            asynchronous = inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
            assert asynchronous, f"{where} runs in the thread pool"
            checked += 1
    assert checked >= 20


async def test_invalid_body_returns_422_with_field_paths_and_no_echo(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/users",
        json={"name": "X", "email": "not-an-email", "password": "p4ss-word-secret", "admin": True},
    )
    assert response.status_code == 422
    body = response.json()
    locations = {tuple(error["loc"]) for error in body["detail"]}
    assert ("body", "email") in locations
    assert ("body", "admin") in locations  # unknown fields are refused, not ignored
    assert "p4ss-word-secret" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]


async def test_malformed_json_returns_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/users", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
