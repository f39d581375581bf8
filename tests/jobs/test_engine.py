"""The job engine on both backends: retries with backoff, then the dead-letter list,
counted in the job metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from tests.support.brokers import eventually, random_prefix, require_shared_redis
from townsquare.platform.jobs import Jobs


@pytest.fixture(params=["memory", "redis"])
async def jobs(request: pytest.FixtureRequest) -> AsyncIterator[Jobs]:
    redis_url = await require_shared_redis() if request.param == "redis" else None
    engine = Jobs(
        redis_url=redis_url,
        prefix=random_prefix(),
        registry=CollectorRegistry(),
        max_attempts=3,
        retry_delay=0.05,
        retry_max_delay=0.2,
        timeout=2.0,
        claim_after=5.0,
        concurrency=4,
    )
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

    engine = Jobs(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        prefix=random_prefix(),
        registry=CollectorRegistry(),
        max_attempts=3,
        retry_delay=0.05,
        retry_max_delay=0.2,
        timeout=2.0,
        claim_after=5.0,
        concurrency=4,
    )

    async def noop() -> None:
        return None

    engine.register("test.noop", noop)
    await engine.start()  # logs, does not fail: the web process starts without Redis
    try:
        with pytest.raises(JobsUnavailable):
            await engine.enqueue("test.noop")
    finally:
        await engine.stop()
