from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from townsquare.rooms.asyncapi import build_asyncapi
from townsquare.rooms.protocol import CLIENT_FRAME, SERVER_FRAME

SCHEMA = json.loads((Path(__file__).parent / "asyncapi_schema" / "3.0.0.json").read_text())


def _validate(document: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(document)


async def test_asyncapi_json_validates_as_asyncapi_3(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    document = response.json()
    _validate(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["this"]["protocol"] == "ws"


def test_asyncapi_lists_every_frame_of_both_unions() -> None:
    document = build_asyncapi()
    messages = document["components"]["messages"]
    client_types = {m["name"] for key, m in messages.items() if key.startswith("client.")}
    server_types = {m["name"] for key, m in messages.items() if key.startswith("server.")}
    assert client_types == {"auth", "join", "leave", "send", "typing", "ping", "refresh"}
    assert server_types == {
        "welcome",
        "joined",
        "left",
        "message",
        "presence",
        "typing",
        "pong",
        "error",
        "bye",
    }
    operations = document["operations"]
    assert operations["clientFrames"]["action"] == "receive"
    assert operations["serverFrames"]["action"] == "send"
    # The payload schemas are the models' own: a valid frame matches its schema.
    schemas = document["components"]["schemas"]
    send = schemas["SendFrame"]
    assert send["required"] == ["type", "room", "body"]
    assert send["additionalProperties"] is False
    CLIENT_FRAME.validate_python({"type": "send", "room": "a", "body": "hi"})
    SERVER_FRAME.validate_python({"type": "pong"})


def test_validation_really_rejects_a_broken_document() -> None:
    document = build_asyncapi()
    broken = copy.deepcopy(document)
    broken["operations"]["clientFrames"]["action"] = "publish"  # AsyncAPI 2 wording
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)
    missing = copy.deepcopy(document)
    del missing["info"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(missing)


async def test_docs_link_the_asyncapi_page(client: httpx.AsyncClient) -> None:
    openapi = (await client.get("/openapi.json")).json()
    assert "/docs/asyncapi" in openapi["info"]["description"]
    page = await client.get("/docs/asyncapi")
    assert page.status_code == 200
    assert "/asyncapi.json" in page.text
    assert "<code>join</code>" in page.text


async def test_asyncapi_is_off_in_production() -> None:
    from tests.conftest import make_settings
    from townsquare.main import create_app

    app = create_app(
        make_settings(env="production", secret_key="p" * 40, smtp_url="smtp://127.0.0.1:2525")
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/asyncapi.json")).status_code == 404
        assert (await http.get("/docs/asyncapi")).status_code == 404


async def test_asyncapi_page_shows_each_frames_fields_with_types_and_no_inline_style(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/docs/asyncapi")
    assert response.status_code == 200
    page = response.text
    assert "<style" not in page
    assert "style=" not in page
    assert "<script" not in page
    assert "/static/docs/asyncapi.css" in page
    # Every frame of both directions, with its fields, their types and meanings.
    assert "id='client.send'" in page
    assert "id='server.joined'" in page
    assert "<code>online_count</code>" in page
    assert "<code>UserPublic[]</code>" in page
    assert "&quot;removed&quot; | &quot;room_deleted&quot; | &quot;access_revoked&quot;" in page
    css = await client.get("/static/docs/asyncapi.css")
    assert css.status_code == 200
