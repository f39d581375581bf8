"""Every environment variable the service reads, in one place.

Settings are built once by the caller (the CLI, the app factory, a test) and passed
down; nothing reads the environment at import time.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated

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
        default=10, ge=1, description="Connections kept open per worker (PostgreSQL)."
    )
    database_max_overflow: int = Field(
        default=20, ge=0, description="Extra connections allowed under burst (PostgreSQL)."
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
        description="Frames a WebSocket may send per second (bursts up to twice that); "
        "over it the client gets `error`, and is closed with 1008 if it goes on.",
    )
    ws_send_queue_size: int = Field(
        default=256,
        ge=8,
        description="Frames waiting to be sent to one WebSocket; a client too slow to "
        "drain them is closed with 1013.",
    )
    web_concurrency: int = Field(default=2, ge=1, description="Worker processes under gunicorn.")
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
    rate_limit_key_prefix: str = Field(
        default="townsquare:ratelimit", description="Prefix of the rate-limit keys in Redis."
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

    @field_validator("rate_limit_default", "rate_limit_login", "rate_limit_signup")
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
