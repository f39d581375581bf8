"""Counted slots with leases: at most `limit` holders of one key at a time, in memory
for one process or in Redis across many (for example: a user's open sockets).

A holder takes a slot and gives it back; in Redis each slot is a lease that this
process renews in the background, so the slots of an instance that dies free
themselves within `lease_seconds` without anyone cleaning up after it. When Redis
cannot answer, slots are counted in this process instead (the limit then holds per
process), and a warning says so: a Redis outage must not lock users out.

Takes and gives-back that arrive together share one round trip: while one batch is
on its way to Redis the next ones queue, and go as one pipeline (each still decided
on its own by the script, in arrival order), so a storm of sockets costs a round trip
per batch, not per socket.

Generic on purpose: keys and holders are opaque strings here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, Protocol
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from townsquare.platform.redis_batches import Batches

logger = logging.getLogger(__name__)

LEASE_SECONDS = 60.0


class SlotStore(Protocol):
    async def acquire(self, key: str, holder: str, limit: int) -> bool:
        """Take a slot of `key` for `holder` if fewer than `limit` are taken."""

    async def release(self, key: str, holder: str) -> None:
        """Give the slot back; idempotent."""

    async def aclose(self) -> None:
        """Stop renewing and release connections."""


class MemorySlots:
    """One process: a set of holders per key."""

    def __init__(self) -> None:
        self._holders: dict[str, set[str]] = {}

    async def acquire(self, key: str, holder: str, limit: int) -> bool:
        holders = self._holders.setdefault(key, set())
        if holder not in holders and len(holders) >= limit:
            return False
        holders.add(holder)
        return True

    async def release(self, key: str, holder: str) -> None:
        holders = self._holders.get(key)
        if holders is not None:
            holders.discard(holder)
            if not holders:
                del self._holders[key]

    def count(self, key: str) -> int:
        return len(self._holders.get(key, ()))

    async def aclose(self) -> None:
        self._holders.clear()


# One sorted set per key: member = holder, score = when its lease ends, in Redis's own
# clock (TIME), so the instances' clocks never matter. Expired leases are dropped
# before counting; the key expires with its last lease.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# Renew one lease, taken or not: the holder is already in (its socket is open), and
# after a Redis restart its lease must come back.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
"""


class RedisSlots:
    """Across processes and instances, in the Redis at `url`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "townsquare:",
        timeout: float = 2.0,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._prefix = prefix
        self._timeout = timeout
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._renew_every = lease_seconds / 3
        self._redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, socket_keepalive=True
        )
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        # Slots this process holds in Redis, renewed in the background; and those it
        # counted itself while Redis could not answer.
        self._held: set[tuple[str, str]] = set()
        self._local = MemorySlots()
        self._renewer: asyncio.Task[None] | None = None
        self._batches = Batches(self._redis, timeout=timeout, scripts=[_ACQUIRE])

    def _key(self, key: str) -> str:
        return f"{self._prefix}slots:{key}"

    async def acquire(self, key: str, holder: str, limit: int) -> bool:
        self._start_renewing()
        try:
            taken = await self._batches.run(
                ("EVALSHA", self._acquire.sha, 1, self._key(key), holder, self._lease_ms, limit)
            )
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning(
                "slot store unavailable (%s); counting %s in this process", type(exc).__name__, key
            )
            return await self._local.acquire(key, holder, limit)
        if taken:
            self._held.add((key, holder))
        return bool(taken)

    async def release(self, key: str, holder: str) -> None:
        await self._local.release(key, holder)
        if (key, holder) not in self._held:
            return
        self._held.discard((key, holder))
        try:
            await self._batches.run(("ZREM", self._key(key), holder))
        except (RedisError, OSError, TimeoutError):
            logger.warning("slot store unavailable; a slot of %s ends with its lease", key)

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self._batches.aclose()
        await self._redis.aclose()

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_forever(), name="slot leases")

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            held = list(self._held)
            if not held:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, holder in held:
                        await self._renew(
                            keys=[self._key(key)], args=[holder, self._lease_ms], client=pipe
                        )
                    await self._call(pipe.execute())
            except (RedisError, OSError, TimeoutError) as exc:
                logger.warning("slot leases not renewed (%s)", type(exc).__name__)

    async def _call(self, command: Awaitable[Any]) -> Any:
        async with asyncio.timeout(self._timeout):
            return await command


def create_slots(
    url: str | None, *, prefix: str = "townsquare:", timeout: float = 2.0
) -> SlotStore:
    """Memory when `url` is None or `memory://`, Redis for redis://, rediss://, unix://."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemorySlots()
    if scheme in {"redis", "rediss", "unix"}:
        assert url is not None
        return RedisSlots(url, prefix=prefix, timeout=timeout)
    raise ValueError(f"unsupported slot store URL scheme {scheme!r}")
