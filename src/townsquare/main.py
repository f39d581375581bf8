"""The application factory: the one place that knows every part and wires them."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from townsquare import __version__
from townsquare.admin.router import router as admin_router
from townsquare.api_keys.router import router as api_keys_router
from townsquare.auth import service as auth_service
from townsquare.auth.account_router import router as account_router
from townsquare.auth.exceptions import InvalidToken
from townsquare.auth.passwords import PasswordHasher
from townsquare.auth.principals import PrincipalCache
from townsquare.auth.revocations import SessionRevocations
from townsquare.auth.router import router as auth_router
from townsquare.auth.throttle import LoginThrottle
from townsquare.auth.tokens import TokenCodec
from townsquare.config import Environment, Settings
from townsquare.jobs import JobContext, register_jobs
from townsquare.platform import migrations, tracing
from townsquare.platform.broker.factory import create_backend
from townsquare.platform.broker.hub import Hub
from townsquare.platform.database import Database, create_database
from townsquare.platform.docs import install_docs
from townsquare.platform.errors import install_error_handlers
from townsquare.platform.health import LIVENESS_ANSWERS, NotReady, Readiness
from townsquare.platform.health import router as health_router
from townsquare.platform.instances import InstanceRegistry, create_instance_store
from townsquare.platform.jobs import Jobs
from townsquare.platform.mail import create_mailer
from townsquare.platform.metrics import Metrics
from townsquare.platform.metrics import router as metrics_router
from townsquare.platform.middleware.allowed_methods import AllowedMethodsMiddleware
from townsquare.platform.middleware.body_limit import BodyLimitMiddleware
from townsquare.platform.middleware.capacity import CapacityMiddleware
from townsquare.platform.middleware.edge import EdgeMiddleware
from townsquare.platform.middleware.rate_limit import RateLimitMiddleware
from townsquare.platform.openapi import document_platform_statuses
from townsquare.platform.presence import create_presence
from townsquare.platform.ratelimit import RateLimiter
from townsquare.platform.shutdown import Drain
from townsquare.platform.slots import create_slots
from townsquare.rooms import asyncapi, websocket
from townsquare.rooms.admission import Admission
from townsquare.rooms.manager import ConnectionManager
from townsquare.rooms.router import router as rooms_router
from townsquare.users.router import router as users_router

# The browser client: static files only (no Python in that folder, so nothing but the
# page, its script and its style can be served from it).
WEB_DIR = files("townsquare") / "web"
# Answered whatever the load: an orchestrator must never restart a worker for being busy.
PROBES = frozenset({"/health", "/live", "/ready", "/metrics"})

logger = logging.getLogger(__name__)


async def _web_index() -> FileResponse:
    return FileResponse(str(WEB_DIR / "index.html"), media_type="text/html")


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """The app. Traces go to `tracer_provider` when given (tests pass one with an
    in-memory exporter), else to OTEL_EXPORTER_OTLP_ENDPOINT when set, else nowhere."""
    settings = settings or Settings()
    owned_provider = tracer_provider is None
    provider = tracer_provider or tracing.create_provider(
        settings.otel_exporter_otlp_endpoint, settings.otel_service_name
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool_size, max_overflow = settings.database_pool()
        database = create_database(
            settings.database_url,
            pool_size=pool_size,
            max_overflow=max_overflow,
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
        tracing.instrument_engine(database.engine, provider)

        async def database_answers() -> None:
            async with database.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        readiness.add("database", database_answers)

        async def schema_is_current() -> None:
            lag = await migrations.schema_lag(database.engine)
            if lag is not None:
                raise NotReady(f"{lag}: run `townsquare migrate`")

        readiness.add("schema", schema_is_current)
        if not settings.is_sqlite:
            await _warn_if_schema_lags(database)

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
        register_jobs(
            jobs,
            JobContext(
                settings=settings,
                database=database,
                mailer=create_mailer(
                    settings.smtp_url.get_secret_value() if settings.smtp_url else None,
                    sender=settings.mail_from,
                    timeout=settings.smtp_timeout_seconds,
                    log_bodies=settings.env is Environment.DEVELOPMENT,
                ),
                jobs=jobs,
            ),
        )
        # With Redis this only connects the producer side (`townsquare worker` runs
        # the jobs); without, jobs and the periodic purge run in this process.
        await jobs.start()
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
            # live connection must not look ready. The probe goes first: while the
            # backend is down it is also what makes it reconnect at once.
            if not await backend.probe(readiness.timeout) or not hub.is_healthy():
                raise ConnectionError("broker round trip failed")

        readiness.add("broker", broker_delivers)
        # SIGTERM: say `bye` and close with 1012 before the server drops connections,
        # within the drain's share of the graceful timeout (platform/shutdown.py).
        drain.register(lambda within: rooms.shutdown(grace=within))
        try:
            async with metrics.sampling(), instances.running():
                yield
        finally:
            await jobs.stop(grace=settings.graceful_timeout / 3)
            await rooms.shutdown()
            await instances.store.aclose()
            await rooms.stop()
            await hub.stop()
            await presence.aclose()
            await rate_limiter.close()
            await admission.slots.aclose()
            await database.dispose()
            if owned_provider and provider is not None:
                provider.shutdown()  # exports what is still buffered

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
        # FastAPI's own OpenTelemetry hooks would look up the global providers on every
        # request; traces are set up here instead, and only when asked for
        # (platform/tracing.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
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
    metrics = app.state.metrics = Metrics(
        worker_capacity=settings.worker_capacity,
        websocket_capacity=settings.ws_max_connections,
    )
    jobs = app.state.jobs = create_jobs_engine(settings, metrics.registry)
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

    # The /ws budgets: sockets per worker, pending per client IP, per user (Redis-wide).
    admission = app.state.admission = Admission(
        max_connections=settings.ws_max_connections,
        max_pending_per_ip=settings.ws_max_pending_per_ip,
        max_per_user=settings.ws_max_connections_per_user,
        slots=create_slots(
            settings.redis_url,
            prefix=settings.broker_channel_prefix,
            timeout=settings.broker_timeout_seconds,
        ),
    )

    install_error_handlers(app)
    # Added innermost first: a request meets them in the reverse order.
    app.add_middleware(AllowedMethodsMiddleware, routes=app.router.routes)
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=rate_limiter,
            default=settings.rate_limit_default,
            per_route={
                ("POST", "/auth/token"): settings.rate_limit_login,
                ("POST", "/users"): settings.rate_limit_signup,
                ("POST", "/auth/password-reset"): settings.rate_limit_password_reset,
            },
            identify_user=_user_from_bearer(app.state.tokens),
            exempt_paths=PROBES,
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
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        timeout=settings.http_body_timeout_seconds,
    )
    app.add_middleware(CapacityMiddleware, limit=settings.worker_capacity, exempt_paths=PROBES)
    # Request id, security headers, metrics and the access log, in one layer; the
    # WebSocket endpoint is reached from there directly (platform/middleware/edge.py).
    app.add_middleware(
        EdgeMiddleware,
        metrics=metrics,
        hsts=settings.is_production,
        websocket_routes={"/ws": websocket.endpoint},
        answers=LIVENESS_ANSWERS,
    )

    tracing.instrument_app(app, provider)

    # Routes are matched in the order they are included, one by one: the reads and
    # writes every client makes all day come first. (The liveness probes are answered
    # before routing, platform/middleware/edge.py.)
    app.include_router(users_router)
    app.include_router(rooms_router)
    app.include_router(auth_router)
    app.include_router(account_router)
    app.include_router(api_keys_router)
    app.include_router(admin_router)
    app.include_router(health_router)
    app.include_router(metrics_router)
    # The page, its admin view and its sessions view are one document; the script shows
    # the view the path names.
    for page in ("/", "/admin", "/sessions"):
        app.add_api_route(
            page,
            _web_index,
            methods=["GET", "HEAD"],
            response_class=FileResponse,
            include_in_schema=False,
        )
    app.mount("/static", StaticFiles(directory=str(WEB_DIR)), name="static")
    app.router.routes.append(websocket.route)
    if docs:
        install_docs(app, openapi_url="/openapi.json")
        app.include_router(asyncapi.router)
    document_platform_statuses(app, probes=PROBES, rate_limited=settings.rate_limit_enabled)
    return app


async def _warn_if_schema_lags(database: Database) -> None:
    """Say at start what /ready will say: the service runs, but is not ready."""
    try:
        lag = await migrations.schema_lag(database.engine)
    except Exception as exc:
        logger.warning("database schema not checked at start (%s)", exc.__class__.__name__)
        return
    if lag is not None:
        logger.warning(
            "database schema %s: run `townsquare migrate`; /ready answers 503 until then", lag
        )


def create_jobs_engine(settings: Settings, registry: CollectorRegistry) -> Jobs:
    return Jobs(
        redis_url=settings.redis_url,
        prefix=settings.broker_channel_prefix,
        registry=registry,
        max_attempts=settings.job_max_attempts,
        retry_delay=settings.job_retry_delay_seconds,
        retry_max_delay=settings.job_retry_max_delay_seconds,
        timeout=settings.job_timeout_seconds,
        claim_after=settings.job_claim_after_seconds,
        concurrency=settings.job_concurrency,
    )


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
