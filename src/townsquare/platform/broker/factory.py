"""Pick the broker backend from a URL, the way the rest of the settings pick a store."""

from __future__ import annotations

from urllib.parse import urlsplit

from townsquare.platform.broker.base import BrokerBackend
from townsquare.platform.broker.memory import MemoryBackend
from townsquare.platform.broker.redis import RedisBackend

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def create_backend(
    url: str | None,
    *,
    prefix: str = "townsquare:",
    timeout: float = 2.0,
    backoff_initial: float = 0.1,
    backoff_max: float = 10.0,
    keepalive: float = 5.0,
    queue_size: int = 10_000,
) -> BrokerBackend:
    """`None` or `memory://` gives the one-process backend; `redis://`, `rediss://`
    (TLS) and `unix://` give Redis pub/sub. The options only matter for Redis."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemoryBackend()
    if scheme in REDIS_SCHEMES:
        assert url is not None
        return RedisBackend(
            url,
            prefix=prefix,
            timeout=timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            keepalive=keepalive,
            queue_size=queue_size,
        )
    raise ValueError(
        f"unsupported broker URL scheme {scheme!r}: use memory://, redis://, rediss:// or unix://"
    )
