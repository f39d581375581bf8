"""The application factory: the one place that knows every part and wires them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from townsquare import __version__
from townsquare.auth.passwords import PasswordHasher
from townsquare.auth.router import router as auth_router
from townsquare.auth.tokens import TokenCodec
from townsquare.config import Settings
from townsquare.platform import migrations
from townsquare.platform.broker.hub import Hub, create_backend
from townsquare.platform.database import create_database
from townsquare.platform.errors import install_error_handlers
from townsquare.platform.health import router as health_router
from townsquare.platform.middleware.request_id import RequestIdMiddleware
from townsquare.rooms import asyncapi, websocket
from townsquare.rooms.manager import ConnectionManager, decode_event
from townsquare.rooms.router import router as rooms_router
from townsquare.users.router import router as users_router


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
        hub = Hub(create_backend(settings.redis_url), decode_event)
        await hub.start()
        # The connection manager: the SIGTERM hook calls `app.state.rooms.shutdown()`.
        app.state.rooms = ConnectionManager(settings=settings, database=database, hub=hub)
        try:
            yield
        finally:
            await app.state.rooms.shutdown()
            await hub.stop()
            await database.dispose()

    docs = not settings.is_production
    app = FastAPI(
        title="townsquare",
        version=__version__,
        summary="Accounts, OAuth2/JWT auth, users API and live WebSocket rooms.",
        description="The WebSocket protocol of `/ws` is described in "
        "[/asyncapi.json](/asyncapi.json) (AsyncAPI 3.0), listed at "
        "[/docs/asyncapi](/docs/asyncapi)."
        if docs
        else "",
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

    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(rooms_router)
    app.include_router(websocket.router)
    if docs:
        app.include_router(asyncapi.router)
    return app
