"""Retries with exponential backoff and jitter, then the dead-letter list.

taskiq's `SmartRetryMiddleware` re-sends a failed job with its attempt count; with a
schedule source (Redis) the retry is stored and sent when due, so it survives a
worker restart. In process there is no schedule source: the retry waits in a timer
of this process (jobs in process are not durable anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.asyncio import Redis
from taskiq import ScheduleSource, TaskiqMessage, TaskiqResult
from taskiq.exceptions import NoResultError
from taskiq.kicker import AsyncKicker
from taskiq.middlewares import SmartRetryMiddleware

from townsquare.platform.jobs.metrics import JobMetrics

logger = logging.getLogger(__name__)

DEAD_LETTERS_KEPT = 1000


class DeadLetters(Protocol):
    async def add(self, entry: dict[str, Any]) -> None: ...

    async def latest(self, count: int) -> list[dict[str, Any]]: ...


class MemoryDeadLetters:
    def __init__(self, size: int = DEAD_LETTERS_KEPT) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    async def add(self, entry: dict[str, Any]) -> None:
        self._entries.appendleft(entry)

    async def latest(self, count: int) -> list[dict[str, Any]]:
        return list(self._entries)[:count]


class RedisDeadLetters:
    """A capped Redis list, newest first: what failed, when and why (never the job's
    arguments, which may hold a one-time link)."""

    def __init__(self, redis: Redis, key: str, size: int = DEAD_LETTERS_KEPT) -> None:
        self._redis = redis
        self._key = key
        self._size = size

    async def add(self, entry: dict[str, Any]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self._key, json.dumps(entry))
            pipe.ltrim(self._key, 0, self._size - 1)
            await pipe.execute()

    async def latest(self, count: int) -> list[dict[str, Any]]:
        raw = await self._redis.lrange(self._key, 0, count - 1)
        return [json.loads(item) for item in raw]


class RetryMiddleware(SmartRetryMiddleware):
    def __init__(
        self,
        *,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        schedule_source: ScheduleSource | None,
        metrics: JobMetrics,
        dead_letters: DeadLetters,
    ) -> None:
        super().__init__(
            default_retry_count=max_attempts,
            default_retry_label=False,  # only jobs registered with retry_on_error
            default_delay=base_delay,
            use_jitter=True,
            use_delay_exponent=True,
            max_delay_exponent=max_delay,
            schedule_source=schedule_source,
        )
        self.metrics = metrics
        self.dead_letters = dead_letters
        self._timers: set[asyncio.Task[None]] = set()

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        # Doubling per attempt (taskiq's own grows linearly), capped, with half of it
        # random so that jobs failing together (an SMTP outage) do not retry together.
        delay = float(min(self.max_delay_exponent, self.default_delay * 2 ** (retries - 1)))
        return delay / 2 + random.random() * delay / 2  # noqa: S311 (jitter, not a secret)

    async def on_send(
        self, kicker: AsyncKicker[Any, Any], message: TaskiqMessage, delay: float
    ) -> None:
        if self.schedule_source is not None:
            await super().on_send(kicker, message, delay)
            return

        async def later() -> None:
            await asyncio.sleep(delay)
            await kicker.kiq(*message.args, **message.kwargs)

        timer = asyncio.create_task(later(), name=f"retry-{message.task_name}")
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        if isinstance(exception, NoResultError):
            return
        attempt = int(message.labels.get("_retries", 0)) + 1
        attempts = int(message.labels.get("max_retries", self.default_retry_count))
        if self.is_retry_on_error(message) and attempt < attempts:
            await super().on_error(message, result, exception)
            self.metrics.retried.labels(message.task_name).inc()
            return
        self.metrics.dead_lettered.labels(message.task_name).inc()
        logger.error(
            "job %s (%s) dead-lettered after %d attempt(s): %s",
            message.task_name,
            message.task_id,
            attempt,
            exception.__class__.__name__,
        )
        entry = {
            "task": message.task_name,
            "task_id": message.task_id,
            "attempts": attempt,
            "error": f"{exception.__class__.__name__}: {exception}"[:500],
            "at": datetime.now(UTC).isoformat(),
        }
        try:
            await self.dead_letters.add(entry)
        except Exception:
            logger.exception("could not record the dead letter of job %s", message.task_id)

    def pending_timers(self) -> int:
        return len(self._timers)

    async def cancel_timers(self) -> None:
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
