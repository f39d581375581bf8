"""The application factory: the one place that knows every part and wires them."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from sqlalchemy import text
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from townsquare import __version__
from townsquare.admin.router import router as admin_router
from townsquare.auth import service as auth_service
from townsquare.auth.exceptions import InvalidToken
from townsquare.auth.passwords import PasswordHasher
from townsquare.auth.principals import PrincipalCache
from townsquare.auth.revocations import SessionRevocations
from townsquare.auth.router import router as auth_router
from townsquare.auth.throttle import LoginThrottle
from townsquare.auth.tokens import TokenCodec
from townsquare.config import Settings
from townsquare.platform import migrations
from townsquare.platform.broker.factory import create_backend
from townsquare.platform.broker.hub import Hub
from townsquare.platform.database import create_database
from townsquare.platform.docs import install_docs
from townsquare.platform.errors import install_error_handlers
from townsquare.platform.health import Readiness
from townsquare.platform.health import router as health_router
from townsquare.platform.instances import InstanceRegistry, create_instance_store
from townsquare.platform.metrics import Metrics
from townsquare.platform.metrics import router as metrics_router
from townsquare.platform.middleware.access_log import AccessLogMiddleware
from townsquare.platform.middleware.metrics import MetricsMiddleware
from townsquare.platform.middleware.rate_limit import RateLimitMiddleware
from townsquare.platform.middleware.request_id import RequestIdMiddleware
from townsquare.platform.middleware.security_headers import SecurityHeadersMiddleware
from townsquare.platform.middleware.websocket_routes import WebSocketRoutesMiddleware
from townsquare.platform.presence import create_presence
from townsquare.platform.ratelimit import RateLimiter
from townsquare.platform.shutdown import Drain
from townsquare.rooms import asyncapi, websocket
from townsquare.rooms.manager import ConnectionManager
from townsquare.rooms.router import router as rooms_router
from townsquare.users.router import router as users_router

# The browser client: static files only (no Python in that folder, so nothing but the
# page, its script and its style can be served from it).
WEB_DIR = files("townsquare") / "web"


async def _web_index() -> FileResponse:
    return FileResponse(str(WEB_DIR / "index.html"), media_type="text/html")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = create_database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout=settings.database_pool_timeout_seconds,
        )
        if settings.is_sqlite:
            # The embedded default needs no set-up step: its file is created and
            # brought to the latest schema here. PostgreSQL is migrated by the operator
            # (`townsquare migrate`), never by N workers racing at start.
            await migrations.upgrade(database.engine)
        app.state.database = database
        principals = app.state.principals = PrincipalCache(
            functools.partial(auth_service.load_login, database),
            max_size=settings.principal_cache_size,
            ttl=settings.principal_cache_ttl_seconds,
        )
        app.state.revocations.add_listener(principals.on_account_change)

        async def database_answers() -> None:
            async with database.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        readiness.add("database", database_answers)

        backend = create_backend(
            settings.redis_url,
            prefix=settings.broker_channel_prefix,
            timeout=settings.broker_timeout_seconds,
            backoff_max=settings.broker_backoff_max_seconds,
            queue_size=settings.broker_queue_size,
        )
        hub = Hub(
            backend,
            subscribe_timeout=settings.broker_timeout_seconds,
            on_lag=metrics.broker_lag.observe,
        )
        await hub.start()
        presence = create_presence(
            settings.redis_url,
            prefix=settings.broker_channel_prefix,
            timeout=settings.broker_timeout_seconds,
            max_connections=settings.redis_pool_size,
        )
        rooms = app.state.rooms = ConnectionManager(
            settings=settings,
            database=database,
            hub=hub,
            presence=presence,
            revocations=app.state.revocations,
            tokens=app.state.tokens,
            principals=principals,
            metrics=metrics,
        )
        await rooms.start()
        instances = app.state.instances = InstanceRegistry(
            create_instance_store(
                settings.redis_url,
                prefix=settings.broker_channel_prefix,
                timeout=settings.broker_timeout_seconds,
            ),
            load=rooms.load,
            broker_healthy=hub.is_healthy,
            instance_id=hub.instance_id,
        )

        async def broker_delivers() -> None:
            # A round trip through the backend, not a PING: a dead listener with a
            # live connection must not look ready.
            if not hub.is_healthy() or not await backend.probe(readiness.timeout):
                raise ConnectionError("broker round trip failed")

        readiness.add("broker", broker_delivers)
        # SIGTERM: say `bye` and close with 1012 before the server drops connections.
        drain.register(lambda: rooms.shutdown(grace=settings.graceful_timeout / 3))
        try:
            async with metrics.sampling(), instances.running():
                yield
        finally:
            await rooms.shutdown()
            await instances.store.aclose()
            await rooms.stop()
            await hub.stop()
            await presence.aclose()
            await rate_limiter.close()
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
        # /docs is served by platform/docs.py from local files; no ReDoc (see there).
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.passwords = PasswordHasher(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
    )
    app.state.tokens = TokenCodec(settings)
    app.state.revocations = SessionRevocations()
    # Named async checks behind /ready; features add theirs (e.g. "broker").
    readiness = app.state.readiness = Readiness(timeout=settings.readiness_timeout_seconds)
    # Async callbacks run on SIGTERM before connections close (platform/shutdown.py).
    drain = app.state.drain = Drain()
    metrics = app.state.metrics = Metrics(worker_capacity=settings.worker_capacity)
    rate_limiter = app.state.rate_limiter = RateLimiter(
        redis_url=settings.redis_url,
        key_prefix=settings.rate_limit_key_prefix,
        pool_size=settings.rate_limit_redis_pool_size,
        pool_timeout=settings.rate_limit_redis_pool_timeout_seconds,
        lease_share=settings.rate_limit_lease_share,
    )
    app.state.login_throttle = LoginThrottle(
        rate_limiter,
        limit=settings.rate_limit_login_account,
        trust_seconds=settings.rate_limit_login_trust_days * 86400,
        enabled=settings.rate_limit_enabled,
    )

    install_error_handlers(app)
    # Added innermost first: a request meets them in the reverse order.
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=rate_limiter,
            default=settings.rate_limit_default,
            per_route={
                ("POST", "/auth/token"): settings.rate_limit_login,
                ("POST", "/users"): settings.rate_limit_signup,
            },
            identify_user=_user_from_bearer(app.state.tokens),
            exempt_paths={"/health", "/live", "/ready", "/metrics"},
        )
    if settings.allowed_origins:
        # Without allowed origins no response ever carries CORS headers, and the layer
        # would only cost time on every request (a preflight is then a plain 405).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts=settings.is_production,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(WebSocketRoutesMiddleware, routes={"/ws": websocket.endpoint})
    app.add_middleware(RequestIdMiddleware)

    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(admin_router)
    # The page and its admin view are one document; the script shows the view the
    # path names.
    for page in ("/", "/admin"):
        app.add_api_route(
            page,
            _web_index,
            methods=["GET", "HEAD"],
            response_class=FileResponse,
            include_in_schema=False,
        )
    app.mount("/static", StaticFiles(directory=str(WEB_DIR)), name="static")
    app.include_router(rooms_router)
    app.router.routes.append(websocket.route)
    if docs:
        install_docs(app, openapi_url="/openapi.json")
        app.include_router(asyncapi.router)
    return app


def _user_from_bearer(codec: TokenCodec) -> Callable[[Scope], str | None]:
    """The rate limiter's view of the caller: the user id in a valid bearer token.

    Only the signature and expiry are checked (no database), which is enough to pick
    the counter; the route's own auth still decides whether the request is allowed.
    """

    def identify(scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token or len(token) > 4096:
                    return None
                try:
                    return str(codec.decode_access(token).user_id)
                except InvalidToken:
                    return None
        return None

    return identify
