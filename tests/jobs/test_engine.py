"""The job engine on both backends: retries with backoff, then the dead-letter list,
counted in the job metrics."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from taskiq import ScheduledTask

from tests.support.brokers import eventually, random_prefix, require_shared_redis
from townsquare.platform.jobs import Jobs


def _engine(redis_url: str | None, *, concurrency: int, max_attempts: int = 3) -> Jobs:
    """An engine with fast retries, on its own prefix."""
    return Jobs(
        redis_url=redis_url,
        prefix=random_prefix(),
        registry=CollectorRegistry(),
        max_attempts=max_attempts,
        retry_delay=0.05,
        retry_max_delay=0.2,
        timeout=2.0,
        claim_after=5.0,
        concurrency=concurrency,
    )


@pytest.fixture(params=["memory", "redis"])
async def jobs(request: pytest.FixtureRequest) -> AsyncIterator[Jobs]:
    redis_url = await require_shared_redis() if request.param == "redis" else None
    engine = _engine(redis_url, concurrency=4)
    yield engine
    await engine.stop()


@contextlib.asynccontextmanager
async def running(jobs: Jobs) -> AsyncIterator[None]:
    """Web side started; with Redis, also a worker in this process."""
    await jobs.start()
    stop = asyncio.Event()
    worker = asyncio.create_task(jobs.run_worker(stop, grace=1.0)) if jobs.durable else None
    try:
        yield
    finally:
        stop.set()
        if worker is not None:
            await asyncio.wait_for(worker, 10)


def _sample(jobs: Jobs, name: str, **labels: str) -> float:
    return float(jobs.registry.get_sample_value(name, labels) or 0)


async def test_failing_job_is_retried_then_dead_lettered_and_counted(jobs: Jobs) -> None:
    attempts: list[float] = []

    async def flaky(word: str) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise ConnectionRefusedError(f"no {word} today")

    jobs.register("test.flaky", flaky, retry=True)
    async with running(jobs):
        await jobs.enqueue("test.flaky", "mail")
        assert await eventually(
            lambda: _sample(jobs, "townsquare_jobs_dead_lettered_total", task="test.flaky") == 1,
            within=30,
        )
    assert len(attempts) == 3  # JOB_MAX_ATTEMPTS
    assert _sample(jobs, "townsquare_jobs_finished_total", task="test.flaky", outcome="failed") == 3
    assert _sample(jobs, "townsquare_jobs_retried_total", task="test.flaky") == 2
    [letter] = await jobs.dead_letters.latest(10)
    assert letter["task"] == "test.flaky"
    assert letter["attempts"] == 3
    assert letter["error"] == "ConnectionRefusedError: no mail today"
    assert "mail" not in {str(value) for key, value in letter.items() if key != "error"}


async def test_job_that_succeeds_on_a_retry_is_not_dead_lettered(jobs: Jobs) -> None:
    calls = 0
    done = asyncio.Event()

    async def second_time_lucky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError("first time unlucky")
        done.set()

    jobs.register("test.lucky", second_time_lucky, retry=True)
    async with running(jobs):
        await jobs.enqueue("test.lucky")
        async with asyncio.timeout(30):
            await done.wait()
    assert calls == 2
    assert _sample(jobs, "townsquare_jobs_dead_lettered_total", task="test.lucky") == 0
    assert (
        _sample(jobs, "townsquare_jobs_finished_total", task="test.lucky", outcome="succeeded") == 1
    )


async def test_job_without_retry_is_dead_lettered_after_one_attempt(jobs: Jobs) -> None:
    async def broken() -> None:
        raise RuntimeError("bug")

    jobs.register("test.broken", broken)
    async with running(jobs):
        await jobs.enqueue("test.broken")
        assert await eventually(
            lambda: _sample(jobs, "townsquare_jobs_dead_lettered_total", task="test.broken") == 1,
            within=30,
        )
    assert _sample(jobs, "townsquare_jobs_retried_total", task="test.broken") == 0


async def test_backoff_doubles_with_jitter_and_is_capped(jobs: Jobs) -> None:
    from taskiq import TaskiqMessage

    message = TaskiqMessage(task_id="t", task_name="x", labels={}, args=[], kwargs={})
    for attempt, full in [(1, 0.05), (2, 0.1), (3, 0.2), (9, 0.2)]:
        delays = [jobs.retry.make_delay(message, attempt) for _ in range(50)]
        assert all(full / 2 <= delay <= full for delay in delays), (attempt, delays)
        assert len(set(delays)) > 1  # jittered


async def test_enqueue_with_redis_down_raises_jobs_unavailable() -> None:
    from tests.support.server import free_port
    from townsquare.platform.jobs import JobsUnavailable

    engine = _engine(f"redis://127.0.0.1:{free_port()}/0", concurrency=4)

    async def noop() -> None:
        return None

    engine.register("test.noop", noop)
    await engine.start()  # logs, does not fail: the web process starts without Redis
    try:
        with pytest.raises(JobsUnavailable):
            await engine.enqueue("test.noop")
    finally:
        await engine.stop()


async def test_worker_start_forgets_consumers_of_gone_workers_without_jobs() -> None:
    from redis.asyncio import Redis

    url = await require_shared_redis()
    prefix = random_prefix()
    engine = Jobs(
        redis_url=url,
        prefix=prefix,
        registry=CollectorRegistry(),
        max_attempts=3,
        retry_delay=0.05,
        retry_max_delay=0.2,
        timeout=0.05,
        claim_after=0.1,
        concurrency=1,
    )
    stream, group = f"{prefix}jobs", f"{prefix}jobs:workers"
    redis = Redis.from_url(url)
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
        await redis.xgroup_createconsumer(stream, group, "gone-worker")
        await asyncio.sleep(0.2)  # idle longer than claim_after
        stop = asyncio.Event()
        worker = asyncio.create_task(engine.run_worker(stop, grace=1.0))
        assert await eventually(lambda: _consumer_names(redis, stream, group), within=10)
        stop.set()
        await asyncio.wait_for(worker, 10)
    finally:
        await engine.stop()
        await redis.delete(stream)
        await redis.aclose()


async def _consumer_names(redis: object, stream: str, group: str) -> bool:
    from redis.asyncio import Redis

    assert isinstance(redis, Redis)
    names = {c["name"] for c in await redis.xinfo_consumers(stream, group)}
    return b"gone-worker" not in names


async def test_worker_outlives_a_redis_restart(tmp_path: Path) -> None:
    from tests.support.brokers import RedisServer

    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    server = RedisServer(tmp_path)
    await server.start()
    engine = _engine(server.url, concurrency=2)
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    engine.register("test.after-restart", job)
    stop = asyncio.Event()
    worker = asyncio.create_task(engine.run_worker(stop, grace=1.0))
    try:
        await asyncio.sleep(0.5)  # listening
        await server.stop()  # SIGKILL: every connection drops
        await asyncio.sleep(0.5)
        await server.start()
        assert not worker.done()
        async with asyncio.timeout(30):
            while True:  # Redis is back (it lost the queue's consumer group with it)
                try:
                    await engine.enqueue("test.after-restart")
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            await ran.wait()
    finally:
        stop.set()
        await asyncio.wait_for(worker, 15)
        await engine.stop()
        await server.stop()


@pytest.mark.parametrize("jobs", ["redis"], indirect=True)
async def test_retry_due_in_a_minute_gone_by_is_still_sent(jobs: Jobs) -> None:
    """A retry is filed under the minute it is due. One whose minute ended before a
    scheduler read it (stored in a minute's last seconds, or while no worker led the
    scheduler) must still be sent, whatever `:` the key prefix holds."""
    words: list[str] = []
    ran = asyncio.Event()

    async def late(word: str) -> None:
        words.append(word)
        ran.set()

    jobs.register("test.late", late, retry=True)
    assert jobs.retry_source is not None
    await jobs.retry_source.add_schedule(
        ScheduledTask(
            schedule_id=uuid.uuid4().hex,
            task_name="test.late",
            labels={"_retries": 1},
            args=["again"],
            kwargs={},
            time=datetime.now(UTC) - timedelta(minutes=3),
        )
    )
    async with running(jobs):
        async with asyncio.timeout(20):
            await ran.wait()
    assert words == ["again"]


async def test_stream_read_ends_on_cancel_even_when_a_library_swallowed_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a worker's stop hung on: the read of the next job was cancelled, the error
    # never came out of the Redis client, and the loop went on reading every second.
    jobs = _engine(await require_shared_redis(), concurrency=1, max_attempts=1)
    reading = asyncio.Event()
    swallowed: list[bool] = []

    async def swallowing(self: Redis, *args: Any, **kwargs: Any) -> Any:
        # A blocking read that finds nothing, and swallows the first cancel it meets.
        reading.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(True)
        return []

    monkeypatch.setattr(Redis, "xreadgroup", swallowing)
    await jobs.broker.startup()
    messages = jobs.broker.listen()
    try:
        next_message = asyncio.ensure_future(anext(messages))
        await reading.wait()
        next_message.cancel()
        # Ended by the next turn of its loop (a read blocks 1 s at most), not never.
        done, _ = await asyncio.wait({next_message}, timeout=10)
        assert done == {next_message}
        assert next_message.cancelled()
        assert swallowed == [True]
    finally:
        if not next_message.done():  # the second cancel is not swallowed
            next_message.cancel()
            await asyncio.wait({next_message}, timeout=10)
        await messages.aclose()
        await jobs.broker.shutdown()
        await jobs.stop()
