"""Who is online where, with expiry: in memory for one process, in Redis across many.

A user is online in a room while at least one of its connections has an entry that
has not expired. Each connection marks itself online with a TTL and refreshes
well within it (from its heartbeat); an instance that dies stops refreshing, so its
users leave every room within the TTL without anyone cleaning up after it.

Generic on purpose: rooms, users and connections are opaque strings here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError


class PresenceUnavailable(Exception):
    """The presence store cannot answer right now (for example, Redis is down).
    Presence is best effort: callers log this and carry on."""


class PresenceStore(Protocol):
    async def mark_online(self, room: str, user: str, connection_id: str, ttl: float) -> None:
        """`connection_id` of `user` is in `room` for the next `ttl` seconds."""

    async def refresh(self, room: str, user: str, connection_id: str, ttl: float) -> None:
        """Extend the entry by `ttl` seconds from now (re-adding it if it expired)."""

    async def mark_offline(self, room: str, user: str, connection_id: str) -> None:
        """Remove the entry now; idempotent."""

    async def online(self, room: str) -> set[str]:
        """Users with at least one unexpired connection in `room`."""

    async def aclose(self) -> None:
        """Release connections."""


class MemoryPresence:
    """One process: a dict of expiry times on the monotonic clock."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[tuple[str, str], float]] = {}

    async def mark_online(self, room: str, user: str, connection_id: str, ttl: float) -> None:
        self._rooms.setdefault(room, {})[(user, connection_id)] = time.monotonic() + ttl

    async def refresh(self, room: str, user: str, connection_id: str, ttl: float) -> None:
        await self.mark_online(room, user, connection_id, ttl)

    async def mark_offline(self, room: str, user: str, connection_id: str) -> None:
        entries = self._rooms.get(room)
        if entries is not None:
            entries.pop((user, connection_id), None)
            if not entries:
                del self._rooms[room]

    async def online(self, room: str) -> set[str]:
        entries = self._rooms.get(room)
        if not entries:
            return set()
        now = time.monotonic()
        for key in [key for key, expires in entries.items() if expires <= now]:
            del entries[key]
        return {user for user, _ in entries}

    async def aclose(self) -> None:
        self._rooms.clear()


# One sorted set per room: member = one connection, score = its expiry in Redis's own
# clock (TIME), so the clocks of the instances never matter. The key itself expires
# with its last member, so an abandoned room leaves nothing behind.
_MARK_ONLINE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
"""

_ONLINE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def _member(user: str, connection_id: str) -> str:
    # Length-prefixed, so no user or connection id can forge another's member.
    return f"{len(user)}:{user}{connection_id}"


def _user_of(member: bytes) -> str:
    text = member.decode()
    length, _, rest = text.partition(":")
    return rest[: int(length)]


class RedisPresence:
    """Across processes and instances, in the Redis at `url`; needs Redis 5 or later."""

    def __init__(self, url: str, *, prefix: str = "townsquare:", timeout: float = 2.0) -> None:
        self._prefix = prefix
        self._timeout = timeout
        self._redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, socket_keepalive=True
        )
        self._mark_online = self._redis.register_script(_MARK_ONLINE)
        self._online = self._redis.register_script(_ONLINE)

    def _key(self, room: str) -> str:
        return f"{self._prefix}presence:{room}"

    async def mark_online(self, room: str, user: str, connection_id: str, ttl: float) -> None:
        milliseconds = max(1, round(ttl * 1000))
        await self._call(
            self._mark_online(
                keys=[self._key(room)], args=[_member(user, connection_id), milliseconds]
            )
        )

    async def refresh(self, room: str, user: str, connection_id: str, ttl: float) -> None:
        await self.mark_online(room, user, connection_id, ttl)

    async def mark_offline(self, room: str, user: str, connection_id: str) -> None:
        await self._call(self._redis.zrem(self._key(room), _member(user, connection_id)))

    async def online(self, room: str) -> set[str]:
        members = cast(list[bytes], await self._call(self._online(keys=[self._key(room)])))
        return {_user_of(member) for member in members}

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _call(self, command: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await command
        except (RedisError, OSError, TimeoutError) as exc:
            raise PresenceUnavailable(f"presence store unavailable ({type(exc).__name__})") from exc


def create_presence(
    url: str | None, *, prefix: str = "townsquare:", timeout: float = 2.0
) -> PresenceStore:
    """Memory when `url` is None or `memory://`, Redis for redis://, rediss://, unix://."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemoryPresence()
    if scheme in {"redis", "rediss", "unix"}:
        assert url is not None
        return RedisPresence(url, prefix=prefix, timeout=timeout)
    raise ValueError(f"unsupported presence URL scheme {scheme!r}")
