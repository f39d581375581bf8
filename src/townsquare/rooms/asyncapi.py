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


def _type_name(schema: dict[str, Any]) -> str:
    """A short, readable type for one JSON schema: `string`, `UserPublic[]`, `integer?`."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return f'"{schema["const"]}"'
    if "enum" in schema:
        return " | ".join(f'"{value}"' for value in schema["enum"])
    if "anyOf" in schema:
        kinds = [_type_name(option) for option in schema["anyOf"] if option.get("type") != "null"]
        nullable = any(option.get("type") == "null" for option in schema["anyOf"])
        return " | ".join(kinds) + (" | null" if nullable else "")
    if schema.get("type") == "array":
        return _type_name(schema.get("items", {})) + "[]"
    return str(schema.get("type", "any"))


def _description(schema: dict[str, Any]) -> str:
    if "description" in schema:
        return str(schema["description"])
    for option in schema.get("anyOf", ()):
        if "description" in option:
            return str(option["description"])
    return ""


def _fields_table(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    required = set(schema.get("required", ()))
    rows = []
    for name, field in schema.get("properties", {}).items():
        kind = _type_name(field)
        target = schemas.get(kind.removesuffix("[]").removesuffix(" | null"))
        if target is not None and "enum" in target:
            kind = " | ".join(f'"{value}"' for value in target["enum"])
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code>"
            f"{'' if name in required or name == 'type' else ' <small>optional</small>'}</td>"
            f"<td><code>{html.escape(kind)}</code></td>"
            f"<td>{html.escape(_description(field))}</td></tr>"
        )
    return (
        "<div class='scroll'><table><thead><tr><th>field</th><th>type</th>"
        f"<th>meaning</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def render_asyncapi_page(document: dict[str, Any]) -> str:
    """The AsyncAPI document as a page: every frame, each field with its type and
    meaning. Built from the same document as /asyncapi.json, so the two never differ."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    messages: dict[str, Any] = document["components"]["messages"]
    sections = []
    for direction, heading in (("client", "Client → server"), ("server", "Server → client")):
        items = []
        for key, message in messages.items():
            if not key.startswith(f"{direction}."):
                continue
            schema = schemas[str(message["payload"]["$ref"]).rsplit("/", 1)[-1]]
            anchor = html.escape(key, quote=True)
            items.append(
                f"<article id='{anchor}'><h3><code>{html.escape(message['name'])}</code></h3>"
                f"<p>{html.escape(schema.get('description', ''))}</p>"
                f"{_fields_table(schema, schemas)}</article>"
            )
        sections.append(f"<section><h2>{heading}</h2>{''.join(items)}</section>")
    user = schemas.get("UserPublic")
    shared = (
        "<section><h2>Shared shapes</h2><article id='UserPublic'><h3><code>UserPublic</code>"
        f"</h3>{_fields_table(user, schemas)}</article></section>"
        if user is not None
        else ""
    )
    info = document["info"]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(info['title'])}</title>"
        "<link rel='stylesheet' href='/static/docs/asyncapi.css'></head><body><main>"
        f"<h1>{html.escape(info['title'])} <small>{html.escape(info['version'])}</small></h1>"
        f"<p>{html.escape(info['description'])}</p>"
        "<p>The machine-readable document is <a href='/asyncapi.json'>/asyncapi.json</a> "
        "(AsyncAPI 3.0); the HTTP API is at <a href='/docs'>/docs</a>.</p>"
        f"{''.join(sections)}{shared}</main></body></html>"
    )


@router.get("/docs/asyncapi", response_class=HTMLResponse)
async def asyncapi_page(request: Request) -> HTMLResponse:
    """Every frame of the protocol with its fields; the full document is /asyncapi.json."""
    return HTMLResponse(render_asyncapi_page(build_asyncapi(str(request.base_url))))
