"""Rate-limit counters: fixed windows, shared across workers by leasing tokens from Redis.

Why leases: asking Redis on every request puts a network round trip on every request
of the common path. Instead, each process holds, per counter and window, a lease of
tokens that Redis granted it (one script call: grant `min(wanted, limit - used)` and
count them as used). Requests spend the lease locally, with no I/O. The first lease of
a window is one token and each next one doubles, up to `lease_share` of the limit, so
a busy counter costs one round trip per tenth of its limit, and the next lease is
fetched in the background before the current one runs out.

Accuracy (tested in tests/platform/test_ratelimit.py):
- never more than `limit` requests pass in a window across all workers while Redis
  answers, because Redis never grants more than that in total;
- tokens leased to one worker and left unused there are lost for that window, so a
  client spreading its requests over P workers may be refused after
  `limit - (P - 1) * lease` of them (lease = at most `lease_share` of the limit).

When Redis is down, slow, or its pool has no free connection within the pool
timeout, counting goes on in process (the same limit per worker) and a warning is
logged at most once a minute; Redis is tried again after a backoff. Rate limiting
never turns off: it fails to stricter-per-worker counting, never open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
V = TypeVar("V")

# A Redis that answers a command in more than this is treated as down for a while.
STORAGE_TIMEOUT_SECONDS = 0.5
WARNING_INTERVAL_SECONDS = 60.0
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# Counters and remembered keys kept in process, at most (oldest windows dropped first).
MAX_LOCAL_KEYS = 100_000

# Grant up to ARGV[2] tokens of the ARGV[1] a window allows; the key expires with it.
LEASE_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used)
if grant <= 0 then return 0 end
if redis.call('INCRBY', KEYS[1], grant) == grant then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return grant
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0


class StorageUnavailable(Exception):
    pass


@dataclass(slots=True)
class _Lease:
    window: int
    tokens: int = 0
    used: int = 0  # tokens spent here this window: where in-process counting starts
    next_size: int = 1
    exhausted: bool = False  # Redis granted nothing: refuse until the window ends
    pending: asyncio.Task[None] | None = None


class RateLimiter:
    def __init__(
        self,
        *,
        redis_url: str | None = None,
        key_prefix: str = "townsquare",
        pool_size: int = 20,
        pool_timeout: float = 0.5,
        lease_share: float = 0.1,
    ) -> None:
        self._redis: Redis | None = None
        # `memory://` means "no Redis", as it does for the broker and presence.
        if redis_url and urlsplit(redis_url).scheme != "memory":
            pool = BlockingConnectionPool.from_url(
                redis_url,
                max_connections=pool_size,
                timeout=pool_timeout,  # wait this long for a free connection, then give up
                socket_timeout=STORAGE_TIMEOUT_SECONDS,
                socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
            )
            self._redis = Redis(connection_pool=pool)
            self._lease_script = self._redis.register_script(LEASE_SCRIPT)
        self._prefix = key_prefix
        self._budget = pool_timeout + 2 * STORAGE_TIMEOUT_SECONDS
        self._lease_share = lease_share
        self._leases: dict[str, _Lease] = {}
        self._local: dict[str, tuple[int, int]] = {}  # key -> (window, count)
        self._remembered: dict[str, float] = {}  # key -> expiry (time.time())
        self._background: set[asyncio.Task[None]] = set()
        self._down_until = -math.inf
        self._backoff = BACKOFF_INITIAL_SECONDS
        self._last_warning = -math.inf
        # Round trips to Redis, for tests and the benchmark's curiosity.
        self.round_trips = 0

    @property
    def shared(self) -> bool:
        """Whether counters are shared through Redis (when it answers)."""
        return self._redis is not None

    @staticmethod
    def parse(limit: str) -> RateLimitItem:
        return parse(limit)

    async def hit(self, limit: RateLimitItem, *identifiers: str) -> Decision:
        """Count one request against `limit` for `identifiers`; say whether it may pass."""
        seconds = limit.get_expiry()
        now = time.time()
        window = int(now // seconds)
        retry_after = max(1, math.ceil((window + 1) * seconds - now))
        key = ":".join((self._prefix, str(limit.amount), str(seconds), *identifiers))
        if self._redis is None:
            return self._count_locally(key, window, limit.amount, retry_after)
        lease = self._leases.get(key)
        if lease is None or lease.window != window:
            lease = self._leases[key] = _Lease(window)
            self._bound(self._leases)
        while True:
            if lease.tokens > 0:
                lease.tokens -= 1
                lease.used += 1
                if lease.tokens <= lease.next_size // 2 and lease.pending is None:
                    self._refill(lease, key, limit)  # in the background: nobody waits
                return Decision(allowed=True)
            if lease.exhausted:
                return Decision(allowed=False, retry_after=retry_after)
            if time.monotonic() < self._down_until:
                return self._count_locally(key, window, limit.amount, retry_after)
            task = lease.pending or self._refill(lease, key, limit)
            try:
                await asyncio.shield(task)
            except StorageUnavailable:
                return self._count_locally(key, window, limit.amount, retry_after)

    def _refill(self, lease: _Lease, key: str, limit: RateLimitItem) -> asyncio.Task[None]:
        """Ask Redis for the next lease; concurrent requests share one call."""
        task = asyncio.create_task(self._lease(lease, key, limit))
        lease.pending = task
        self._background.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed background refill is not an error

    async def _lease(self, lease: _Lease, key: str, limit: RateLimitItem) -> None:
        wanted = lease.next_size
        cap = max(1, int(limit.amount * self._lease_share))
        try:
            granted = await self._call_redis(
                self._lease_script(
                    keys=[f"{key}:{lease.window}"],
                    args=[limit.amount, wanted, limit.get_expiry() * 1000 + 1000],
                )
            )
        finally:
            lease.pending = None
        if int(granted) <= 0:
            lease.exhausted = True
        else:
            lease.tokens += int(granted)
            lease.next_size = min(cap, wanted * 2)

    async def _call_redis(self, call: Awaitable[Any]) -> Any:
        """Await one Redis call within the budget; on failure, count in process for a while."""
        self.round_trips += 1
        try:
            async with asyncio.timeout(self._budget):
                result = await call
        except (RedisError, OSError, TimeoutError) as exc:
            self._mark_down(exc)
            raise StorageUnavailable() from exc
        self._backoff = BACKOFF_INITIAL_SECONDS
        return result

    def _mark_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self._backoff
        self._backoff = min(BACKOFF_MAX_SECONDS, self._backoff * 2)
        if now - self._last_warning >= WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            logger.warning(
                "rate-limit storage unavailable, counting in this process: %s",
                exc.__class__.__name__,
                exc_info=exc,
            )

    def _count_locally(self, key: str, window: int, amount: int, retry_after: int) -> Decision:
        seen_window, count = self._local.get(key, (-1, 0))
        if seen_window != window:
            # What this process already let through Redis counts too.
            lease = self._leases.get(key)
            count = lease.used if lease is not None and lease.window == window else 0
        if count >= amount:
            return Decision(allowed=False, retry_after=retry_after)
        self._local[key] = (window, count + 1)
        self._bound(self._local)
        return Decision(allowed=True)

    @staticmethod
    def _bound(table: dict[str, V]) -> None:
        # Dicts keep insertion order: the first entries are the longest unused windows.
        while len(table) > MAX_LOCAL_KEYS:
            del table[next(iter(table))]

    # -- remembered keys (the login throttle's trusted addresses) ----------------------

    async def remember(self, ttl_seconds: int, *identifiers: str) -> None:
        """Keep a mark for `ttl_seconds`, shared across workers when Redis answers."""
        key = ":".join((self._prefix, "mark", *identifiers))
        self._remembered[key] = time.time() + ttl_seconds
        self._bound(self._remembered)
        if self._redis is not None and time.monotonic() >= self._down_until:
            # On failure the mark is still kept in this process.
            with contextlib.suppress(StorageUnavailable):
                await self._call_redis(self._redis.set(key, b"1", ex=ttl_seconds))

    async def remembers(self, *identifiers: str) -> bool:
        key = ":".join((self._prefix, "mark", *identifiers))
        expiry = self._remembered.get(key)
        if expiry is not None and expiry > time.time():
            return True
        if self._redis is None or time.monotonic() < self._down_until:
            return False
        try:
            return bool(await self._call_redis(self._redis.exists(key)))
        except StorageUnavailable:
            return False

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
