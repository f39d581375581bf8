"""`/asyncapi.json`: the `/ws` protocol as an AsyncAPI 3.0 document, generated from
the frame models of `protocol.py`, and a small page that lists the frames."""

from __future__ import annotations

import html
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, TypeAdapter

from townsquare import __version__
from townsquare.rooms.protocol import ClientFrame, ServerFrame

router = APIRouter(include_in_schema=False)

_REF = "#/components/schemas/{model}"
CHANNEL = "ws"


def _members(union: object) -> list[type[BaseModel]]:
    # ClientFrame is Annotated[A | B | ..., Field(discriminator=...)].
    return list(get_args(get_args(union)[0]))


def _frame_type(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].annotation.__args__[0])  # type: ignore[union-attr]


def build_asyncapi(server_url: str | None = None) -> dict[str, Any]:
    client, server = _members(ClientFrame), _members(ServerFrame)
    # One generation for both directions: client frames as the server validates
    # them, server frames as it serializes them, sharing definitions (UserPublic).
    inputs = [(m, "validation", TypeAdapter(m)) for m in client]
    inputs += [(m, "serialization", TypeAdapter(m)) for m in server]
    refs, definitions = TypeAdapter.json_schemas(inputs, ref_template=_REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = definitions.get("$defs", {})

    messages: dict[str, Any] = {}
    channel_messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for direction, models, action in (("client", client, "receive"), ("server", server, "send")):
        names = []
        arrow = "client to server" if direction == "client" else "server to client"
        for model in models:
            name = f"{direction}.{_frame_type(model)}"
            mode = "validation" if direction == "client" else "serialization"
            messages[name] = {
                "name": _frame_type(model),
                "title": f"{_frame_type(model)} ({arrow})",
                "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
                "contentType": "application/json",
                "payload": refs[(model, mode)],  # type: ignore[index]
            }
            channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
            names.append(name)
        operations[f"{direction}Frames"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "title": "Frames the client sends"
            if direction == "client"
            else "Frames the server sends",
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{name}"} for name in names],
        }

    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "townsquare WebSocket protocol",
            "version": __version__,
            "description": "Live rooms over one WebSocket at `/ws`. Every frame is a JSON "
            "object with a `type`. Authenticate with `Authorization: Bearer <token>` on "
            "the handshake or a first `auth` frame; then `join` rooms (with `since` to "
            "recover missed messages), `send`, `typing`, `leave`, `ping`, `refresh`. "
            "Close codes: 1003 binary frame, 1008 authentication, rate or heartbeat, "
            "1009 frame too large, 1012 server restarting, 1013 client too slow to read.",
        },
        "defaultContentType": "application/json",
        "channels": {
            CHANNEL: {
                "address": "/ws",
                "title": "The one WebSocket of a client",
                "messages": channel_messages,
            }
        },
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
    if server_url is not None:
        scheme, _, rest = server_url.partition("://")
        document["servers"] = {
            "this": {
                "host": rest.rstrip("/"),
                "protocol": "wss" if scheme == "https" else "ws",
                "description": "The server that served this document.",
            }
        }
        document["channels"][CHANNEL]["servers"] = [{"$ref": "#/servers/this"}]
    return document


@router.get("/asyncapi.json", response_model=dict[str, Any])
async def asyncapi(request: Request) -> dict[str, Any]:
    return build_asyncapi(str(request.base_url))


@router.get("/docs/asyncapi", response_class=HTMLResponse)
async def asyncapi_page() -> HTMLResponse:
    """A plain page listing every frame; the full document is /asyncapi.json."""
    rows = []
    for direction, models in (
        ("client → server", _members(ClientFrame)),
        ("server → client", _members(ServerFrame)),
    ):
        rows.append(f"<h2>{html.escape(direction)}</h2><dl>")
        for model in models:
            fields = ", ".join(
                f"<code>{html.escape(name)}</code>" + ("" if info.is_required() else "?")
                for name, info in model.model_fields.items()
                if name != "type"
            )
            doc = html.escape((model.__doc__ or "").strip())
            frame = html.escape(_frame_type(model))
            rows.append(f"<dt><code>{frame}</code> {{{fields}}}</dt><dd>{doc}</dd>")
        rows.append("</dl>")
    body = "".join(rows)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>townsquare /ws</title>"
        "<style>body{font-family:sans-serif;max-width:52rem;margin:2rem auto;line-height:1.4}"
        "dd{margin:0 0 .8rem 1.5rem;color:#444}</style></head><body>"
        "<h1>townsquare WebSocket protocol</h1>"
        "<p>The machine-readable document is <a href='/asyncapi.json'>/asyncapi.json</a> "
        "(AsyncAPI 3.0); the HTTP API is at <a href='/docs'>/docs</a>.</p>"
        f"{body}</body></html>"
    )
    return HTMLResponse(page)
