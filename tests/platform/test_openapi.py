"""The OpenAPI document names the platform's answers; OPTIONS and 405 name every method."""

from __future__ import annotations

import httpx
import pytest


async def test_every_operation_documents_the_platform_statuses(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            if path in {"/health", "/live", "/ready", "/metrics"}:
                assert "503" not in statuses or path == "/ready"
                continue
            assert "503" in statuses, (method, path)
            if "requestBody" in operation:
                assert {"400", "408", "413", "422"} <= statuses, (method, path)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/me", "GET, OPTIONS, PATCH"),
        ("/rooms", "GET, OPTIONS, POST"),
        ("/rooms/general/members/7", "DELETE, OPTIONS, PUT"),
        ("/users/3", "GET, OPTIONS, PATCH"),
    ],
)
async def test_options_and_405_list_every_method_of_the_path(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    options = await client.options(path)
    assert options.status_code == 204
    assert options.headers["allow"] == allowed
    not_allowed = await client.request("TRACE", path)
    assert not_allowed.status_code == 405
    assert not_allowed.headers["allow"] == allowed


async def test_unparseable_json_is_a_documented_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/users", content=b"\xff\xfe not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code in {400, 422}
    assert "request_id" in response.json()
