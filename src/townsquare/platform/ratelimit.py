"""Rate-limit counters: in memory for one process, in Redis to share them across workers.

Built on the `limits` library's sliding-window counter. When Redis is down or slow the
limiter lets the request through and logs a warning (at most once a minute): losing
rate limiting for a while is better than turning every request into an error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool

logger = logging.getLogger(__name__)

# A Redis that answers in more than this is treated as down for this request.
STORAGE_TIMEOUT_SECONDS = 0.5
WARNING_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0


class RateLimiter:
    def __init__(self, *, redis_url: str | None = None, key_prefix: str = "townsquare") -> None:
        self._pool: ConnectionPool | None = None
        storage: Storage
        # `memory://` means "no Redis", as it does for the broker and presence.
        if redis_url and urlsplit(redis_url).scheme != "memory":
            self._pool = ConnectionPool.from_url(
                redis_url,
                socket_timeout=STORAGE_TIMEOUT_SECONDS,
                socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
            )
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=key_prefix,
                # Our own pool, so close() can release its connections.
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
        else:
            storage = MemoryStorage()
        self._storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._last_warning = -math.inf

    @staticmethod
    def parse(limit: str) -> RateLimitItem:
        return parse(limit)

    async def hit(self, limit: RateLimitItem, *identifiers: str) -> Decision:
        """Count one request against `limit` for `identifiers`; say whether it may pass."""
        try:
            async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS * 2):
                if await self._strategy.hit(limit, *identifiers):
                    return Decision(allowed=True)
                stats = await self._strategy.get_window_stats(limit, *identifiers)
        except Exception as exc:  # any storage failure: fail open, loudly
            self._warn(exc)
            return Decision(allowed=True)
        return Decision(
            allowed=False, retry_after=max(1, math.ceil(stats.reset_time - time.time()))
        )

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            logger.warning(
                "rate-limit storage unavailable, letting requests through: %s",
                exc.__class__.__name__,
                exc_info=exc,
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        timer = getattr(self._storage, "timer", None)
        if isinstance(timer, asyncio.Task):
            timer.cancel()
