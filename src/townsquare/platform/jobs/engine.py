"""Background jobs on taskiq: durable on a Redis stream, or in this process.

With Redis, web processes only enqueue (XADD to a stream) and `townsquare worker`
processes run the jobs: each reads through one consumer group, acknowledges a job
after it ran, and claims the jobs a dead worker left unacknowledged. Retries wait in
taskiq-redis's schedule source; the periodic jobs and due retries are sent by one
scheduler at a time, the worker holding a lease in Redis. Without Redis, jobs run as
tasks of the web process that enqueued them (nothing survives a restart).

Features register their jobs by name (`register`) and enqueue them by name
(`enqueue`); this module knows none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError
from taskiq import AckableMessage, AsyncBroker, InMemoryBroker, ScheduleSource, TaskiqScheduler
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.exceptions import SendTaskError
from taskiq.receiver import Receiver
from taskiq.schedule_sources import LabelScheduleSource
from taskiq.serializers import JSONSerializer
from taskiq_redis import RedisStreamBroker

from townsquare.platform.errors import AppError
from townsquare.platform.jobs.metrics import JobMetrics, MetricsMiddleware
from townsquare.platform.jobs.retry import (
    DeadLetters,
    MemoryDeadLetters,
    RedisDeadLetters,
    RetryMiddleware,
)
from townsquare.platform.jobs.schedules import RetrySchedule

logger = logging.getLogger(__name__)

# The scheduler leader's lease: renewed every third of it, taken over by another worker
# when a leader dies without releasing it.
LEADER_LEASE_SECONDS = 15.0
SCHEDULE_REFRESH = timedelta(seconds=2)
REDIS_TIMEOUT_SECONDS = 5.0
STREAM_BLOCK_MS = 1000
LISTEN_RETRY_SECONDS = 2.0
# Entries kept in the job stream; acknowledged ones are only trimmed by this bound.
STREAM_MAX_LENGTH = 100_000


class JobsUnavailable(AppError):
    status_code = 503
    detail = "The job queue is unavailable; try again shortly"


class ClaimingStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, claiming abandoned jobs also when the queue is
    idle: upstream only looks for them after new jobs arrive, so a job taken by a
    worker that was killed would wait for the next unrelated job."""

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        claim_every = min(5.0, self.idle_timeout / 2000)
        last_claim = 0.0
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                # Each read runs in the task of whoever awaits the next message.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled (the worker stopping), yet still here: the error was
                    # swallowed on the way up (seen under load: the worker's stop then
                    # waited forever on this loop). End the loop as the cancel asked.
                    raise asyncio.CancelledError()
                fetched: Any = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    block=self.block,
                    count=self.count,
                )
                for stream, entries in fetched or []:
                    for entry_id, fields in entries:
                        yield AckableMessage(
                            data=fields[b"data"], ack=self._ack_generator(entry_id, stream)
                        )
                if time.monotonic() - last_claim < claim_every:
                    continue
                last_claim = time.monotonic()
                _, claimed, *_ = await redis.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    count=self.unacknowledged_batch_size,
                )
                for entry_id, fields in claimed:
                    if not fields:  # trimmed from the stream meanwhile
                        continue
                    logger.warning("claimed job %s left by a worker that stopped", entry_id)
                    yield AckableMessage(
                        data=fields[b"data"], ack=self._ack_generator(entry_id, self.queue_name)
                    )


def _redis_failure(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_redis_failure(inner) for inner in exc.exceptions)
    return isinstance(exc, (RedisError, OSError))


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{exc.__class__.__name__}: {exc}"


def is_durable(redis_url: str | None) -> bool:
    return bool(redis_url) and urlsplit(redis_url or "").scheme != "memory"


class Jobs:
    def __init__(
        self,
        *,
        redis_url: str | None,
        prefix: str,
        registry: CollectorRegistry,
        max_attempts: int,
        retry_delay: float,
        retry_max_delay: float,
        timeout: float,
        claim_after: float,
        concurrency: int,
    ) -> None:
        self.durable = is_durable(redis_url)
        self.registry = registry
        self.metrics = JobMetrics(registry)
        self.timeout = timeout
        self.concurrency = concurrency
        self._prefix = prefix + "jobs"
        self._redis: Redis | None = None
        self.retry_source: ScheduleSource | None = None
        self.broker: AsyncBroker
        dead_letters: DeadLetters
        if self.durable:
            assert redis_url is not None
            options: dict[str, Any] = {
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                # Longer than a blocking read of the stream.
                "socket_timeout": REDIS_TIMEOUT_SECONDS + STREAM_BLOCK_MS / 1000,
            }
            self.broker = ClaimingStreamBroker(
                redis_url,
                queue_name=self._prefix,
                consumer_group_name=self._prefix + ":workers",
                # A group created after jobs were queued starts with the first of them.
                consumer_id="0",
                xread_block=STREAM_BLOCK_MS,
                xread_count=concurrency,
                idle_timeout=int(claim_after * 1000),
                maxlen=STREAM_MAX_LENGTH,
                max_connection_pool_size=concurrency + 10,
                **options,
            )
            self._redis = Redis.from_url(redis_url, **options)
            self.retry_source = RetrySchedule(
                redis_url,
                prefix=self._prefix + ":retries",
                serializer=JSONSerializer(),
                max_connection_pool_size=4,
                **options,
            )
            dead_letters = RedisDeadLetters(self._redis, self._prefix + ":dead")
        else:
            self.broker = InMemoryBroker(max_async_tasks=concurrency, max_stored_results=1)
            dead_letters = MemoryDeadLetters()
        self.dead_letters = dead_letters
        self.retry = RetryMiddleware(
            max_attempts=max_attempts,
            base_delay=retry_delay,
            max_delay=retry_max_delay,
            schedule_source=self.retry_source,
            metrics=self.metrics,
            dead_letters=dead_letters,
        )
        self.broker.add_middlewares(MetricsMiddleware(self.metrics), self.retry)
        self._background: set[asyncio.Task[None]] = set()
        self._started = False

    # -- jobs ----------------------------------------------------------------------------

    def register(
        self,
        name: str,
        func: Callable[..., Awaitable[None]],
        *,
        retry: bool = False,
        every_seconds: int | None = None,
    ) -> None:
        """`retry`: a failed run is retried with backoff, then dead-lettered.
        `every_seconds`: the scheduler also runs it that often (the first time at start)."""
        labels: dict[str, Any] = {"timeout": self.timeout}
        if retry:
            labels["retry_on_error"] = True
        if every_seconds is not None:
            labels["schedule"] = [{"interval": every_seconds, "schedule_id": name}]
        self.broker.register_task(func, task_name=name, **labels)

    async def enqueue(self, name: str, *args: Any, **kwargs: Any) -> None:
        task = self.broker.find_task(name)
        if task is None:
            raise LookupError(f"no job named {name!r}")
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await task.kiq(*args, **kwargs)
        except (SendTaskError, RedisError, OSError, TimeoutError) as exc:
            cause = exc.__cause__ or exc
            logger.error("could not enqueue job %s: %s", name, cause.__class__.__name__)
            raise JobsUnavailable() from exc

    # -- in the web process ----------------------------------------------------------------

    async def start(self) -> None:
        """Web processes: with Redis, be ready to enqueue; in process, also run the
        scheduler (periodic jobs) here."""
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self.broker.startup()
        except (RedisError, OSError, TimeoutError) as exc:
            # Enqueueing says so (503) until Redis answers; nothing else depends on it.
            logger.warning("job queue not reachable at start: %s", exc.__class__.__name__)
        self._started = True
        if not self.durable:
            self._spawn(self._run_scheduler(), "job-scheduler")

    async def stop(self, grace: float = 5.0) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if isinstance(self.broker, InMemoryBroker):
            running = list(self.broker._running_tasks)
            if running:
                _, pending = await asyncio.wait(running, timeout=grace)
                for task in pending:
                    task.cancel()
                if pending:
                    logger.warning("%d in-process job(s) cut short by shutdown", len(pending))
        await self.retry.cancel_timers()
        if self._started:
            with contextlib.suppress(RedisError, OSError):
                await self.broker.shutdown()
        if self._redis is not None:
            await self._redis.aclose()
        pool = getattr(self.retry_source, "_connection_pool", None)
        if pool is not None:
            await pool.disconnect()

    async def idle(self) -> None:
        """Every in-process job enqueued so far has finished (tests)."""
        if isinstance(self.broker, InMemoryBroker):
            await self.broker.wait_all()

    # -- `townsquare worker` ---------------------------------------------------------------

    async def run_worker(self, stop: asyncio.Event, *, grace: float) -> None:
        """Run jobs from Redis until `stop` is set, then finish (within `grace`) the
        ones running; lead the scheduler whenever no other worker does."""
        if not self.durable:
            raise RuntimeError("the worker needs REDIS_URL")
        self.broker.is_worker_process = True
        self._spawn(self._lead_scheduler(stop), "job-scheduler-leader")
        while not stop.is_set():
            try:
                if not self._started:
                    await self.broker.startup()
                    self._started = True
                    await self._forget_gone_workers()
                else:
                    # A Redis that restarted without persistence lost the group too.
                    assert isinstance(self.broker, RedisStreamBroker)
                    await self.broker._declare_consumer_group()
                receiver = Receiver(
                    self.broker,
                    max_async_tasks=self.concurrency,
                    run_startup=False,
                    wait_tasks_timeout=grace,
                )
                await receiver.listen(stop)
            except Exception as exc:
                # The receiver's task group wraps what the stream raised.
                if not _redis_failure(exc):
                    raise
                logger.warning("job queue unreachable (%s); retrying", _describe(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LISTEN_RETRY_SECONDS)

    async def _forget_gone_workers(self) -> None:
        """Drop the consumer entries of workers that stopped and hold no job, so the
        group does not grow by one entry per worker restart."""
        assert self._redis is not None
        assert isinstance(self.broker, RedisStreamBroker)
        broker = self.broker
        consumers = await self._redis.xinfo_consumers(broker.queue_name, broker.consumer_group_name)
        for consumer in consumers:
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) > broker.idle_timeout:
                await self._redis.xgroup_delconsumer(
                    broker.queue_name, broker.consumer_group_name, consumer["name"]
                )

    async def _lead_scheduler(self, stop: asyncio.Event) -> None:
        assert self._redis is not None
        lock = self._redis.lock(
            self._prefix + ":scheduler", timeout=LEADER_LEASE_SECONDS, blocking=False
        )
        while not stop.is_set():
            try:
                if await lock.acquire():
                    logger.info("this worker runs the job scheduler")
                    await self._schedule_while_leading(lock, stop)
            except (RedisError, OSError, LockError) as exc:
                logger.warning("job scheduler lease lost: %s", exc.__class__.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LEADER_LEASE_SECONDS / 3)

    async def _schedule_while_leading(self, lock: Any, stop: asyncio.Event) -> None:
        scheduler = asyncio.create_task(self._run_scheduler())
        try:
            while not stop.is_set() and not scheduler.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LEADER_LEASE_SECONDS / 3)
                await lock.reacquire()
        finally:
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await scheduler
            with contextlib.suppress(RedisError, OSError, LockError):
                await lock.release()

    async def _run_scheduler(self) -> None:
        sources: list[ScheduleSource] = [LabelScheduleSource(self.broker)]
        if self.retry_source is not None:
            sources.append(self.retry_source)
        for source in sources:
            await source.startup()
        loop = SchedulerLoop(TaskiqScheduler(self.broker, sources))
        await loop.run(update_interval=SCHEDULE_REFRESH, loop_interval=timedelta(seconds=1))

    def _spawn(self, coroutine: Awaitable[None], name: str) -> None:
        async def supervised() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s stopped", name)

        task = asyncio.create_task(supervised(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
