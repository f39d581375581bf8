"""Who is online where, with expiry: in memory for one process, in Redis across many.

A user is online in a room while at least one of its connections has an entry that
has not expired. Each connection enters with a TTL and is refreshed well within it;
an instance that dies stops refreshing, and a sweep (run by every instance that
holds the room) takes its users out once their entries expire.

Transitions are decided atomically by the store (a Lua script in Redis): `enter`
says whether the user came online (no entry of it in the room before), `leave` and
`sweep` whether it went offline (this call removed its last entry). So across any
number of instances, each transition is reported to exactly one caller, and the
room hears exactly one `online` and one `offline` per visit. Users are keyed by id;
the name beside it is refreshed with the entry, so a rename never splits a user.

Generic on purpose: rooms and connections are opaque strings, users are ids.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError


class PresenceUnavailable(Exception):
    """The presence store cannot answer right now (for example, Redis is down).
    Presence is best effort: callers log this and carry on."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One connection of one user in one room."""

    room: str
    user_id: int
    name: str
    connection_id: str


@dataclass(frozen=True, slots=True)
class Online:
    """Who is in a room: the exact count and up to `limit` users (id, name), by id."""

    count: int
    users: list[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Entered:
    came_online: bool
    online: Online


class PresenceStore(Protocol):
    async def enter(self, entry: Entry, ttl: float, *, limit: int) -> Entered:
        """Add `entry` for `ttl` seconds; whether its user came online, and the room."""

    async def leave(self, entry: Entry) -> bool:
        """Remove `entry` now; True if this removed its user's last entry (offline)."""

    async def refresh(self, entries: Sequence[Entry], ttl: float) -> list[Entry]:
        """Extend each entry by `ttl` from now; the entries whose user had gone
        (expired and swept) and came online again with this refresh."""

    async def sweep(self, room: str) -> list[tuple[int, str]]:
        """Take out the users of `room` whose entries all expired; each is returned
        to exactly one caller (the one whose sweep removed it)."""

    async def online(self, room: str, *, limit: int) -> Online:
        """The room's users now."""

    async def aclose(self) -> None:
        """Release connections."""


@dataclass
class _MemoryRoom:
    # user id -> (name, {connection id: expiry on the monotonic clock})
    users: dict[int, tuple[str, dict[str, float]]] = field(default_factory=dict)


class MemoryPresence:
    """One process: dicts of expiry times on the monotonic clock."""

    def __init__(self) -> None:
        self._rooms: dict[str, _MemoryRoom] = {}

    async def enter(self, entry: Entry, ttl: float, *, limit: int) -> Entered:
        came_online = self._add(entry, ttl)
        return Entered(came_online, self._online(entry.room, limit))

    def _add(self, entry: Entry, ttl: float) -> bool:
        room = self._rooms.setdefault(entry.room, _MemoryRoom())
        known = room.users.get(entry.user_id)
        connections = {} if known is None else known[1]
        connections[entry.connection_id] = time.monotonic() + ttl
        room.users[entry.user_id] = (entry.name, connections)
        return known is None

    async def leave(self, entry: Entry) -> bool:
        room = self._rooms.get(entry.room)
        known = None if room is None else room.users.get(entry.user_id)
        if room is None or known is None:
            return False
        connections = known[1]
        connections.pop(entry.connection_id, None)
        now = time.monotonic()
        for connection, expires in list(connections.items()):
            if expires <= now:
                del connections[connection]
        if connections:
            return False
        del room.users[entry.user_id]
        if not room.users:
            del self._rooms[entry.room]
        return True

    async def refresh(self, entries: Sequence[Entry], ttl: float) -> list[Entry]:
        return [entry for entry in entries if self._add(entry, ttl)]

    async def sweep(self, room_name: str) -> list[tuple[int, str]]:
        room = self._rooms.get(room_name)
        if room is None:
            return []
        now = time.monotonic()
        gone = []
        for user_id, (name, connections) in list(room.users.items()):
            if all(expires <= now for expires in connections.values()):
                del room.users[user_id]
                gone.append((user_id, name))
        if not room.users:
            del self._rooms[room_name]
        return gone

    async def online(self, room: str, *, limit: int) -> Online:
        return self._online(room, limit)

    def _online(self, room_name: str, limit: int) -> Online:
        room = self._rooms.get(room_name)
        if room is None:
            return Online(0, [])
        now = time.monotonic()
        live = sorted(
            (user_id, name)
            for user_id, (name, connections) in room.users.items()
            if any(expires > now for expires in connections.values())
        )
        return Online(len(live), live[:limit])

    async def aclose(self) -> None:
        self._rooms.clear()


# Keys of a room (prefix p): p:u a sorted set of user ids scored by the expiry of
# their latest entry, p:n a hash of their names, p:c:<user id> a sorted set of that
# user's connections scored by expiry. Times are Redis's own clock (TIME), so the
# instances' clocks never matter; every key expires with its last entry.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: users, names, connections. ARGV: user, name, connection, ttl ms, limit, grace ms.
# Returns {came online 0/1, count, id1, name1, id2, name2, ...}.
_ENTER = (
    _NOW
    + """
local expires = now + tonumber(ARGV[4])
local came = 0
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not known then came = 1 end
redis.call('ZADD', KEYS[3], expires, ARGV[3])
redis.call('ZADD', KEYS[1], 'GT', expires, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
-- Keys outlive their latest entry by a grace period, so sweeps still find (and
-- report) users whose entries expired.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local keep = tonumber(last[2]) + tonumber(ARGV[6])
redis.call('PEXPIREAT', KEYS[1], keep)
redis.call('PEXPIREAT', KEYS[2], keep)
last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[3], tonumber(last[2]) + tonumber(ARGV[6]))
local result = {came, redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')}
local limit = tonumber(ARGV[5])
if limit > 0 then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, limit)
  if #ids > 0 then
    local names = redis.call('HMGET', KEYS[2], unpack(ids))
    for i, id in ipairs(ids) do
      result[#result + 1] = id
      result[#result + 1] = names[i] or ''
    end
  end
end
return result
"""
)

# KEYS: users, names, connections. ARGV: user, connection. Returns 1 when offline.
_LEAVE = (
    _NOW
    + """
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
if #last > 0 then
  redis.call('ZADD', KEYS[1], 'XX', last[2], ARGV[1])
  return 0
end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
)

# KEYS: users, names. ARGV: the prefix of the connection keys.
# Returns {id1, name1, ...}: the users this call took out.
_SWEEP = (
    _NOW
    + """
local gone = {}
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local connections = ARGV[1] .. user
  redis.call('ZREMRANGEBYSCORE', connections, '-inf', now)
  local last = redis.call('ZRANGE', connections, -1, -1, 'WITHSCORES')
  if #last > 0 then
    redis.call('ZADD', KEYS[1], last[2], user)
  else
    gone[#gone + 1] = user
    gone[#gone + 1] = redis.call('HGET', KEYS[2], user) or ''
    redis.call('ZREM', KEYS[1], user)
    redis.call('HDEL', KEYS[2], user)
  end
end
return gone
"""
)

# KEYS: users, names. ARGV: limit. Returns {count, id1, name1, ...}.
_ONLINE = (
    _NOW
    + """
local result = {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')}
local limit = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, limit)
if #ids > 0 then
  local names = redis.call('HMGET', KEYS[2], unpack(ids))
  for i, id in ipairs(ids) do
    result[#result + 1] = id
    result[#result + 1] = names[i] or ''
  end
end
return result
"""
)


# How long a room's keys outlive their latest entry (see _ENTER).
_GRACE_MS = 60_000


def _pairs(flat: Sequence[Any]) -> list[tuple[int, str]]:
    users = [
        (int(flat[i]), flat[i + 1].decode() if isinstance(flat[i + 1], bytes) else flat[i + 1])
        for i in range(0, len(flat) - 1, 2)
    ]
    users.sort()
    return users


class RedisPresence:
    """Across processes and instances, in the Redis at `url` (Redis 6.2 or later). A
    room's keys share one hash tag, so they live together on one node."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "townsquare:",
        timeout: float = 2.0,
        max_connections: int = 50,
    ) -> None:
        self._prefix = prefix
        self._timeout = timeout
        # A bounded pool that waits (up to the timeout) for a free connection, so a
        # burst of leaves queues up instead of failing with "too many connections".
        # A bounded pool that waits (up to the timeout) for a free connection, so a
        # burst of leaves queues up instead of failing with "too many connections".
        self._redis = Redis.from_pool(
            BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                socket_keepalive=True,
            )
        )
        self._enter = self._redis.register_script(_ENTER)
        self._leave = self._redis.register_script(_LEAVE)
        self._sweep = self._redis.register_script(_SWEEP)
        self._online = self._redis.register_script(_ONLINE)

    def _room(self, room: str) -> str:
        return f"{self._prefix}presence:{{{room}}}"

    def _keys(self, room: str, user_id: int) -> list[str]:
        base = self._room(room)
        return [f"{base}:u", f"{base}:n", f"{base}:c:{user_id}"]

    async def enter(self, entry: Entry, ttl: float, *, limit: int) -> Entered:
        result = await self._call(
            self._enter(
                keys=self._keys(entry.room, entry.user_id),
                args=[entry.user_id, entry.name, entry.connection_id, _ms(ttl), limit, _GRACE_MS],
            )
        )
        return Entered(bool(result[0]), Online(int(result[1]), _pairs(result[2:])))

    async def leave(self, entry: Entry) -> bool:
        result = await self._call(
            self._leave(
                keys=self._keys(entry.room, entry.user_id),
                args=[entry.user_id, entry.connection_id],
            )
        )
        return bool(result)

    async def refresh(self, entries: Sequence[Entry], ttl: float) -> list[Entry]:
        if not entries:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                await self._enter(
                    keys=self._keys(entry.room, entry.user_id),
                    args=[entry.user_id, entry.name, entry.connection_id, _ms(ttl), 0, _GRACE_MS],
                    client=pipe,
                )
            results = cast(list[list[Any]], await self._call(pipe.execute()))
        return [entry for entry, result in zip(entries, results, strict=True) if result[0]]

    async def sweep(self, room: str) -> list[tuple[int, str]]:
        base = self._room(room)
        result = await self._call(self._sweep(keys=[f"{base}:u", f"{base}:n"], args=[f"{base}:c:"]))
        return _pairs(result)

    async def online(self, room: str, *, limit: int) -> Online:
        base = self._room(room)
        result = await self._call(self._online(keys=[f"{base}:u", f"{base}:n"], args=[limit]))
        return Online(int(result[0]), _pairs(result[1:]))

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _call(self, command: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await command
        except (RedisError, OSError, TimeoutError) as exc:
            raise PresenceUnavailable(f"presence store unavailable ({type(exc).__name__})") from exc


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def create_presence(
    url: str | None,
    *,
    prefix: str = "townsquare:",
    timeout: float = 2.0,
    max_connections: int = 50,
) -> PresenceStore:
    """Memory when `url` is None or `memory://`, Redis for redis://, rediss://, unix://."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemoryPresence()
    if scheme in {"redis", "rediss", "unix"}:
        assert url is not None
        return RedisPresence(url, prefix=prefix, timeout=timeout, max_connections=max_connections)
    raise ValueError(f"unsupported presence URL scheme {scheme!r}")
