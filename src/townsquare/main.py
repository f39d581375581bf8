"""The application factory: the one place that knows every part and wires them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

from townsquare import __version__
from townsquare.auth.passwords import PasswordHasher
from townsquare.auth.revocations import SessionRevocations
from townsquare.auth.router import router as auth_router
from townsquare.auth.tokens import TokenCodec
from townsquare.config import Settings
from townsquare.platform import migrations
from townsquare.platform.database import create_database
from townsquare.platform.errors import install_error_handlers
from townsquare.platform.health import router as health_router
from townsquare.platform.middleware.request_id import RequestIdMiddleware
from townsquare.users.router import router as users_router

# The browser client: static files only (no Python in that folder, so nothing but the
# page, its script and its style can be served from it).
WEB_DIR = files("townsquare") / "web"


async def _web_index(_request: Request) -> FileResponse:
    return FileResponse(str(WEB_DIR / "index.html"), media_type="text/html")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = create_database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        if settings.is_sqlite:
            # The embedded default needs no set-up step: its file is created and
            # brought to the latest schema here. PostgreSQL is migrated by the operator
            # (`townsquare migrate`), never by N workers racing at start.
            await migrations.upgrade(database.engine)
        app.state.database = database
        try:
            yield
        finally:
            await database.dispose()

    docs = not settings.is_production
    app = FastAPI(
        title="townsquare",
        version=__version__,
        summary="Accounts, OAuth2/JWT auth, users API and live WebSocket rooms.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.passwords = PasswordHasher(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
    )
    app.state.tokens = TokenCodec(settings)
    app.state.revocations = SessionRevocations()

    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.router.add_route("/", _web_index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR)), name="static")
    return app
