"""`/docs` (Swagger UI), served with no network and no inline script.

FastAPI's own page fetches Swagger UI from a CDN and starts it with an inline script,
so it is blank offline and needs a loose CSP. Here the assets come from the
`fastapi-offline` package (a Swagger UI build, MIT), served by the app itself under
`/docs/assets`, and the page starts the viewer from a small script of ours in
`web/docs/`. ReDoc is not offered: its page loads a logo from the vendor's CDN.
"""

from __future__ import annotations

import html
from importlib.resources import files

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"


def _page(title: str, head: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        f"<link rel='icon' href='{ASSETS_PATH}/favicon.png'>{head}</head>"
        f"<body>{body}</body></html>"
    )


def install_docs(app: FastAPI, *, openapi_url: str) -> None:
    """Serve `/docs` and its assets on `app`."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="docs-assets")
    title = f"{app.title} API"
    spec = html.escape(openapi_url, quote=True)
    swagger = _page(
        title,
        f"<link rel='stylesheet' href='{ASSETS_PATH}/swagger-ui.css'>"
        "<link rel='stylesheet' href='/static/docs/docs.css'>"
        f"<script src='{ASSETS_PATH}/swagger-ui-bundle.js' defer></script>"
        "<script src='/static/docs/swagger-init.js' defer></script>",
        f"<div id='swagger-ui' data-openapi-url='{spec}'></div>",
    )
    router = APIRouter(include_in_schema=False)

    @router.get("/docs", response_class=HTMLResponse)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger)

    app.include_router(router)
