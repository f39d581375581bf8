"""Every environment variable the service reads, in one place.

Settings are built once by the caller (the CLI, the app factory, a test) and passed
down; nothing reads the environment at import time.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The placeholder a development checkout runs with; production refuses it.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"  # noqa: S105
MIN_SECRET_KEY_LENGTH = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    env: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="development, test or production; production hides the docs and "
        "insists on a strong SECRET_KEY.",
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port to listen on.")
    database_url: str = Field(
        default="sqlite+aiosqlite:///./townsquare.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///file.db or "
        "postgresql+asyncpg://user:pass@host/db.",
    )
    database_pool_size: int = Field(
        default=10,
        ge=1,
        description="PostgreSQL connections each worker keeps open. All of them together "
        "(workers x instances x this) must stay under the server's max_connections.",
    )
    database_max_overflow: int = Field(
        default=0,
        ge=0,
        description="Connections a worker may open beyond DATABASE_POOL_SIZE under burst "
        "(PostgreSQL); they are closed when returned, so a sustained load opens and closes "
        "them over and over. 0 keeps the pool fixed.",
    )
    principal_cache_size: int = Field(
        default=10_000,
        ge=1,
        description="Signed-in logins whose account state each worker keeps in memory, so "
        "an authenticated request needs no database read; the least recently used go first.",
    )
    principal_cache_ttl_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest a cached login is trusted before it is read again: the bound "
        "on a revocation made on another instance while the broker lost the news.",
    )
    database_max_connections: int = Field(
        default=20,
        ge=1,
        description="PostgreSQL connections this instance may open, all its workers "
        "together: each worker's pool (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW) is cut "
        "to its equal share, DATABASE_MAX_CONNECTIONS // WEB_CONCURRENCY. Keep the sum over "
        "all instances, plus a few for `townsquare migrate` and admin tools, under the "
        "server's max_connections.",
    )
    database_pool_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a request or a WebSocket handshake waits for a free database "
        "connection; then the request is answered 503 and the handshake closed with 1013.",
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db to share the broker, presence and rate limits "
        "across workers; unset means in-memory, one process.",
    )
    broker_channel_prefix: str = Field(
        default="townsquare:",
        min_length=1,
        description="Prefix of every Redis pub/sub channel, so several deployments can "
        "share one Redis.",
    )
    broker_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Redis connect/publish/subscribe timeout; a publish while Redis is "
        "down fails after at most this long.",
    )
    broker_backoff_max_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Cap of the exponential, jittered delay between Redis reconnect attempts.",
    )
    redis_pool_size: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Most connections to Redis per worker for presence; a caller past it "
        "waits (up to BROKER_TIMEOUT_SECONDS) for a free one instead of failing.",
    )
    broker_queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Events buffered between the Redis listener and the local fan-out; "
        "when full the oldest is dropped (and counted).",
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_KEY),
        description="Key that signs access tokens. At least 32 characters in production.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated browser origins allowed by CORS and the WebSocket "
        "Origin check. Empty allows no cross-origin browser.",
    )
    access_token_ttl_seconds: int = Field(
        default=900, ge=30, description="Lifetime of an access token (JWT)."
    )
    refresh_token_ttl_seconds: int = Field(
        default=30 * 24 * 3600, ge=60, description="Lifetime of a refresh token."
    )
    jwt_issuer: str = Field(default="townsquare", description="`iss` of issued tokens.")
    jwt_audience: str = Field(default="townsquare", description="`aud` of issued tokens.")
    password_hash_time_cost: int = Field(
        default=3, ge=1, description="argon2id iterations (tests may lower it)."
    )
    password_hash_memory_kib: int = Field(
        default=65536, ge=8, description="argon2id memory in KiB (tests may lower it)."
    )
    ws_heartbeat_interval_seconds: float = Field(
        default=20.0,
        gt=0,
        description="WebSocket heartbeat: the server pings this often, and a client must "
        "send a frame (`ping` when idle) at least this often.",
    )
    ws_heartbeat_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A WebSocket that sends nothing for this long is closed and goes offline.",
    )
    ws_auth_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Time a WebSocket has to authenticate (first `auth` frame), and to "
        "send `refresh` once its access token has expired.",
    )
    ws_max_frame_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest WebSocket frame a client may send; larger ones close with 1009.",
    )
    ws_messages_per_second: float = Field(
        default=20.0,
        gt=0,
        description="Frames a user may send per second over all of its WebSockets on one "
        "worker (bursts up to twice that); over it the client gets `error`, and a socket "
        "that goes on is closed with 1008.",
    )
    ws_replay_max: int = Field(
        default=1000,
        ge=0,
        le=100_000,
        description="Most missed messages a `join` with `since` replays; past it nothing is "
        "replayed, `joined.recovered` is false and the client pages the history over REST.",
    )
    ws_room_buffer: int = Field(
        default=500,
        ge=0,
        le=100_000,
        description="Latest messages each room with members on a worker keeps in memory, "
        "so a rejoin within them is replayed without a database read.",
    )
    ws_room_buffer_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        le=64 * 1024 * 1024,
        description="Most bytes of frames that ring may hold per room (whichever of the "
        "two limits comes first), so a room of large messages stays small in memory.",
    )
    ws_gap_hold_seconds: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description="How long a message that arrives ahead of a missing one waits for it "
        "(it is on its way through the broker) before the gap is read from the database.",
    )
    ws_send_queue_size: int = Field(
        default=256,
        ge=8,
        description="Frames waiting to be sent to one WebSocket; a client too slow to "
        "drain them is closed with 1013.",
    )
    web_concurrency: int = Field(
        default=1,
        ge=1,
        description="Worker processes under gunicorn. More than one needs REDIS_URL: "
        "without a shared broker each worker would be an island.",
    )
    log_level: str = Field(default="INFO", description="Root log level.")
    cors_allow_credentials: bool = Field(
        default=False,
        description="Let browsers send cookies/HTTP auth cross-origin. Refused together "
        "with a `*` in ALLOWED_ORIGINS. Bearer tokens do not need it.",
    )
    rate_limit_enabled: bool = Field(
        default=True, description="Turn HTTP rate limiting on or off (tests turn it off)."
    )
    rate_limit_default: str = Field(
        default="120/minute",
        description="Limit per signed-in user (per client IP when anonymous) on every route "
        "but the probes and /metrics.",
    )
    rate_limit_login: str = Field(
        default="10/minute", description="Limit per client IP on POST /auth/token."
    )
    rate_limit_signup: str = Field(
        default="5/minute", description="Limit per client IP on POST /users (signup)."
    )
    rate_limit_login_account: str = Field(
        default="20/hour",
        description="Sign-in attempts per account (the submitted email), from every client "
        "address together, except addresses that signed in to that account before "
        "(RATE_LIMIT_LOGIN_TRUST_DAYS); over it: 429 before the password is checked.",
    )
    rate_limit_login_trust_days: int = Field(
        default=30,
        ge=0,
        description="For how long a client address that signed in to an account is exempt "
        "from that account's throttle (0: never), so an attacker cannot lock its owner out.",
    )
    rate_limit_redis_pool_size: int = Field(
        default=20,
        ge=1,
        description="Redis connections the rate limiter keeps per worker.",
    )
    rate_limit_redis_pool_timeout_seconds: float = Field(
        default=0.5,
        gt=0,
        description="How long a request waits for a free rate-limiter Redis connection "
        "before it is counted in process instead.",
    )
    rate_limit_lease_share: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Largest share of a limit one worker leases from Redis at once; lower is "
        "more exact across workers, higher makes fewer Redis round trips.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Comma-separated proxy addresses (or *) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed: the client address rate limits key on. Only list "
        "your own reverse proxies.",
    )
    rate_limit_key_prefix: str = Field(
        default="townsquare:ratelimit", description="Prefix of the rate-limit keys in Redis."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OpenTelemetry collector base URL (OTLP over HTTP, e.g. "
        "http://collector:4318): traces of HTTP requests, SQL, Redis and WebSocket frames "
        "are exported there. Unset: no tracing at all.",
    )
    otel_service_name: str = Field(
        default="townsquare", description="`service.name` of the exported traces."
    )
    readiness_timeout_seconds: float = Field(
        default=2.0, gt=0, description="How long /ready waits for each dependency."
    )
    graceful_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a stopping worker has to finish requests and close WebSockets "
        "before it is killed.",
    )
    worker_timeout: int = Field(
        default=60, ge=1, description="gunicorn kills a worker silent for this many seconds."
    )
    worker_capacity: int = Field(
        default=1000,
        ge=1,
        description="HTTP requests one worker serves at once; beyond it, 503 with Retry-After "
        "(the probes and /metrics are exempt). The denominator of the worker-utilization "
        "metric. WebSockets have their own budget (WS_MAX_CONNECTIONS).",
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request body accepted; a larger one gets 413 before it is read "
        "(by its Content-Length, or as soon as a chunked body passes the limit).",
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Time a client has to send a request's line and headers, from the first "
        "byte (or from the connection's opening); past it the server answers 408 and closes.",
    )
    http_body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Time a client has to send a whole request body once the app reads it; "
        "past it the server answers 408 and closes.",
    )
    ws_max_connections: int = Field(
        default=4000,
        ge=1,
        description="WebSockets one worker holds open (authenticating or authenticated); "
        "beyond it a handshake is refused with 503 and Retry-After. Apart from "
        "WORKER_CAPACITY, so sockets never starve the HTTP side.",
    )
    ws_max_connections_per_user: int = Field(
        default=10,
        ge=1,
        description="Concurrent WebSockets of one user, across every worker and instance "
        "when REDIS_URL is set (in this process otherwise); one more is closed with 1008 "
        "after `bye`.",
    )
    ws_max_pending_per_ip: int = Field(
        default=50,
        ge=1,
        description="WebSockets of one client IP that are open but not yet authenticated, "
        "per worker; beyond it a handshake is refused with 429 and Retry-After.",
    )

    # -- accounts lifecycle ------------------------------------------------------------
    require_verified_email: bool = Field(
        default=False,
        description="Refuse posting and joining rooms (403, or an `email_not_verified` "
        "error frame) to accounts whose email is not verified; they may still log in.",
    )
    email_verification_ttl_seconds: int = Field(
        default=48 * 3600, ge=60, description="How long a link in a verification mail works."
    )
    password_reset_ttl_seconds: int = Field(
        default=1800, ge=60, description="How long a password-reset link works."
    )
    verification_email_limit: str = Field(
        default="3/hour",
        description="Verification mails one account may ask for with POST /me/verification-email.",
    )
    rate_limit_password_reset: str = Field(
        default="5/minute", description="Limit per client IP on POST /auth/password-reset."
    )
    # -- mail ----------------------------------------------------------------------------
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://user:pass@host:port (add ?starttls=true to upgrade), or "
        "smtps://... for implicit TLS. Unset: mails are written to the log (refused when "
        "ENV=production).",
    )
    smtp_timeout_seconds: float = Field(
        default=15.0, gt=0, description="Limit on connecting to and talking with the SMTP server."
    )
    mail_from: str = Field(
        default="townsquare <noreply@localhost>",
        min_length=3,
        description="The From: of every mail, `Name <address>` or an address.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where people reach the service; the base of the links in mails.",
    )
    # -- background jobs -----------------------------------------------------------------
    job_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Attempts of a failing job (mail sending) before it is dead-lettered.",
    )
    job_retry_delay_seconds: float = Field(
        default=2.0, gt=0, description="Delay before the first retry; doubled for each next one."
    )
    job_retry_max_delay_seconds: float = Field(
        default=300.0, gt=0, description="Cap of the delay between two attempts of a job."
    )
    job_timeout_seconds: float = Field(
        default=60.0, gt=0, description="A job running longer than this fails (and is retried)."
    )
    job_claim_after_seconds: float = Field(
        default=300.0,
        gt=0,
        description="With Redis: a job taken by a worker that died (no acknowledgement for "
        "this long) is handed to another worker. Must exceed JOB_TIMEOUT_SECONDS.",
    )
    job_concurrency: int = Field(
        default=10, ge=1, description="Jobs one `townsquare worker` runs at once."
    )
    worker_metrics_port: int = Field(
        default=9101,
        ge=0,
        le=65535,
        description="Port of the /metrics (and /health) endpoint of `townsquare worker`, "
        "on HOST; 0 turns it off.",
    )
    purge_interval_seconds: int = Field(
        default=3600,
        ge=10,
        description="How often spent tokens, old idempotency keys and (with "
        "MESSAGE_RETENTION_DAYS) old messages are purged.",
    )
    idempotency_key_ttl_seconds: int = Field(
        default=24 * 3600,
        ge=60,
        description="How long an Idempotency-Key of POST /rooms/{name}/messages is "
        "remembered; the purge forgets older ones.",
    )
    message_retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Delete messages older than this many days. Unset (the default) "
        "keeps history forever.",
    )

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _upper_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator(
        "rate_limit_default",
        "rate_limit_login",
        "rate_limit_signup",
        "rate_limit_login_account",
        "rate_limit_password_reset",
        "verification_email_limit",
    )
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        from limits import parse

        parse(value)  # raises ValueError naming the bad string
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.allowed_origins:
            raise ValueError(
                "ALLOWED_ORIGINS='*' cannot be combined with CORS_ALLOW_CREDENTIALS=true: "
                "list the origins, or turn credentials off"
            )
        return self

    @model_validator(mode="after")
    def _strong_secret_in_production(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            secret = self.secret_key.get_secret_value()
            if secret == DEV_SECRET_KEY or len(secret) < MIN_SECRET_KEY_LENGTH:
                raise ValueError(
                    "SECRET_KEY must be set to a random string of at least "
                    f"{MIN_SECRET_KEY_LENGTH} characters when ENV=production "
                    "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
        return self

    @field_validator("message_retention_days", mode="before")
    @classmethod
    def _empty_means_off(cls, value: object) -> object:
        # MESSAGE_RETENTION_DAYS= (empty) or 0 in an env file mean "keep forever".
        if value in ("", "0", 0):
            return None
        return value

    @field_validator("public_url")
    @classmethod
    def _http_public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _valid_smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            # Not echoing the URL: it may hold a password.
            raise ValueError("must look like smtp://user:pass@host:port or smtps://host:port")
        return value

    @model_validator(mode="after")
    def _jobs_are_claimed_after_their_timeout(self) -> Settings:
        if self.job_claim_after_seconds <= self.job_timeout_seconds:
            raise ValueError(
                "JOB_CLAIM_AFTER_SECONDS must be greater than JOB_TIMEOUT_SECONDS, or a "
                "job still running would be handed to a second worker"
            )
        return self

    @model_validator(mode="after")
    def _no_dev_secret_on_a_public_interface(self) -> Settings:
        if self.secret_key.get_secret_value() == DEV_SECRET_KEY and not is_loopback(self.host):
            raise ValueError(
                f"HOST={self.host} listens beyond this machine, but SECRET_KEY is the public "
                "development key, with which anyone can sign tokens for any account: set "
                "SECRET_KEY to a random string of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))'), "
                "or listen on HOST=127.0.0.1"
            )
        return self

    @model_validator(mode="after")
    def _no_workers_without_shared_broker(self) -> Settings:
        # Each process without Redis has its own in-memory broker: live messages,
        # presence, session revocation and rate limits would stay inside one worker,
        # and users of one room would not see each other. Refuse rather than split.
        if self.web_concurrency > 1 and self.redis_url is None:
            raise ValueError(
                f"WEB_CONCURRENCY={self.web_concurrency} needs a broker shared by the "
                "workers: without REDIS_URL each worker delivers messages, presence, session "
                "revocations and rate limits only to its own clients. Set "
                "REDIS_URL=redis://host:6379/0 (one Redis for every worker and instance), or "
                "WEB_CONCURRENCY=1"
            )
        return self

    @model_validator(mode="after")
    def _a_connection_for_every_worker(self) -> Settings:
        if self.database_max_connections < self.web_concurrency:
            raise ValueError(
                f"DATABASE_MAX_CONNECTIONS={self.database_max_connections} is fewer than "
                f"WEB_CONCURRENCY={self.web_concurrency}: every worker needs at least one "
                "database connection"
            )
        return self

    def database_pool(self) -> tuple[int, int]:
        """A worker's (pool size, max overflow): DATABASE_POOL_SIZE and
        DATABASE_MAX_OVERFLOW, cut to the worker's share of DATABASE_MAX_CONNECTIONS."""
        share = self.database_max_connections // self.web_concurrency
        pool_size = min(self.database_pool_size, share)
        return pool_size, min(self.database_max_overflow, share - pool_size)

    @model_validator(mode="after")
    def _smtp_in_production(self) -> Settings:
        if self.env is Environment.PRODUCTION and self.smtp_url is None:
            raise ValueError(
                "SMTP_URL must be set when ENV=production (verification and password-reset "
                "mails are sent through it), e.g. smtp://user:pass@mail.example.com:587?starttls=true"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine: `localhost` or a loopback
    address. Anything else (0.0.0.0, ::, a name, a public address) is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
