"""Which instances of the service are running, and what each carries.

Every instance (one per worker process) announces itself every few seconds: a report
of its open sockets, live rooms, message rate and broker health, stored with a TTL.
An instance that stops announcing (killed, frozen) drops out when its report expires;
one that shuts down cleanly withdraws its report at once. With Redis the reports are
shared by the whole deployment, so any instance can answer for all of them; in memory
there is one instance, this one.

Generic on purpose: what is counted comes from a callable the app wires in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

REPORT_INTERVAL_SECONDS = 2.0
# The message rate is averaged over this many seconds of reports.
RATE_WINDOW_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class InstanceLoad:
    """What an instance carries right now."""

    sockets: int  # authenticated WebSockets open
    rooms: int  # rooms with at least one of those sockets in them
    messages: int  # room messages published since start (a counter)


class InstanceReport(BaseModel):
    id: str = Field(description="The instance's id (its broker instance id).")
    host: str = Field(description="Host name of the machine or container.")
    pid: int = Field(description="Process id on that host.")
    started_at: float = Field(description="Unix time the instance started.")
    reported_at: float = Field(description="Unix time of this report.")
    sockets: int = Field(description="Authenticated WebSockets open on the instance.")
    rooms: int = Field(description="Rooms with at least one of its sockets in them.")
    messages_per_second: float = Field(
        description=f"Room messages it published per second over the last "
        f"{RATE_WINDOW_SECONDS:g} seconds."
    )
    broker_healthy: bool = Field(description="Whether its broker connection is healthy.")


class InstancesUnavailable(Exception):
    """The shared store cannot answer right now (for example, Redis is down)."""


class InstanceStore(Protocol):
    async def put(self, report: InstanceReport, ttl: float) -> None:
        """Store `report`, replacing the instance's previous one, for `ttl` seconds."""

    async def remove(self, instance_id: str) -> None:
        """Withdraw the instance's report now; idempotent."""

    async def reports(self) -> list[InstanceReport]:
        """Every unexpired report, by instance id."""

    async def aclose(self) -> None:
        """Release connections."""


class MemoryInstances:
    """One process: reports with expiry times on the monotonic clock."""

    def __init__(self) -> None:
        self._reports: dict[str, tuple[InstanceReport, float]] = {}

    async def put(self, report: InstanceReport, ttl: float) -> None:
        self._reports[report.id] = (report, time.monotonic() + ttl)

    async def remove(self, instance_id: str) -> None:
        self._reports.pop(instance_id, None)

    async def reports(self) -> list[InstanceReport]:
        now = time.monotonic()
        for key in [key for key, (_, expires) in self._reports.items() if expires <= now]:
            del self._reports[key]
        return [report for _, (report, _) in sorted(self._reports.items())]

    async def aclose(self) -> None:
        self._reports.clear()


# One sorted set lists the instances (score = expiry on Redis's own clock, so the
# instances' clocks never matter); each report is a key of its own with the same TTL.
_PUT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
"""

_LIST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[1], 0, 999)
local reports = {}
for i, id in ipairs(ids) do
  reports[i] = redis.call('GET', ARGV[1] .. id) or ''
end
return reports
"""


class RedisInstances:
    """Across processes and machines, in the Redis at `url`."""

    def __init__(self, url: str, *, prefix: str = "townsquare:", timeout: float = 2.0) -> None:
        self._index = f"{prefix}instances"
        self._report_prefix = f"{prefix}instance:"
        self._timeout = timeout
        self._redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._put = self._redis.register_script(_PUT)
        self._list = self._redis.register_script(_LIST)

    async def put(self, report: InstanceReport, ttl: float) -> None:
        milliseconds = max(1, round(ttl * 1000))
        keys = [self._index, self._report_prefix + report.id]
        await self._call(
            self._put(keys=keys, args=[report.id, report.model_dump_json(), milliseconds])
        )

    async def remove(self, instance_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrem(self._index, instance_id)
        pipe.delete(self._report_prefix + instance_id)
        await self._call(pipe.execute())

    async def reports(self) -> list[InstanceReport]:
        raw = cast(
            list[bytes],
            await self._call(self._list(keys=[self._index], args=[self._report_prefix])),
        )
        reports = []
        for item in raw:
            if not item:
                continue  # expired between the two reads
            try:
                reports.append(InstanceReport.model_validate_json(item))
            except ValidationError:
                logger.warning("ignored a malformed instance report")
        return reports

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _call(self, command: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await command
        except (RedisError, OSError, TimeoutError) as exc:
            raise InstancesUnavailable(
                f"instance store unavailable ({type(exc).__name__})"
            ) from exc


def create_instance_store(
    url: str | None, *, prefix: str = "townsquare:", timeout: float = 2.0
) -> InstanceStore:
    """Memory when `url` is None or `memory://`, Redis for redis://, rediss://, unix://."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemoryInstances()
    if scheme in {"redis", "rediss", "unix"}:
        assert url is not None
        return RedisInstances(url, prefix=prefix, timeout=timeout)
    raise ValueError(f"unsupported instance store URL scheme {scheme!r}")


class InstanceRegistry:
    """This instance's side: reports its load every `interval` seconds while running,
    and reads every instance's report."""

    def __init__(
        self,
        store: InstanceStore,
        *,
        load: Callable[[], InstanceLoad],
        broker_healthy: Callable[[], bool],
        instance_id: str | None = None,
        interval: float = REPORT_INTERVAL_SECONDS,
    ) -> None:
        self.store = store
        self.id = instance_id or uuid.uuid4().hex
        self._load = load
        self.broker_healthy = broker_healthy
        self.interval = interval
        # Three intervals: a live instance always reports well within it.
        self.ttl = 3 * interval
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._started_at = time.time()
        window = max(2, round(RATE_WINDOW_SECONDS / interval) + 1)
        self._samples: deque[tuple[float, int]] = deque(maxlen=window)

    def report(self) -> InstanceReport:
        """Sample the load now (called once per interval: the rate is per window)."""
        load = self._load()
        now = time.monotonic()
        self._samples.append((now, load.messages))
        first_at, first_count = self._samples[0]
        elapsed = now - first_at
        rate = (load.messages - first_count) / elapsed if elapsed > 0 else 0.0
        return InstanceReport(
            id=self.id,
            host=self._host,
            pid=self._pid,
            started_at=self._started_at,
            reported_at=time.time(),
            sockets=load.sockets,
            rooms=load.rooms,
            messages_per_second=round(rate, 2),
            broker_healthy=self.broker_healthy(),
        )

    async def announce(self) -> None:
        try:
            await self.store.put(self.report(), self.ttl)
        except InstancesUnavailable:
            logger.warning("instance store unavailable; this instance's report not stored")

    async def reports(self) -> list[InstanceReport]:
        """Every instance's latest report. Raises `InstancesUnavailable`."""
        return await self.store.reports()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Announce now and every interval; withdraw on the way out."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.interval)
                await self.announce()

        await self.announce()
        task = asyncio.create_task(loop(), name="instance-reports")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(InstancesUnavailable):
                await self.store.remove(self.id)
