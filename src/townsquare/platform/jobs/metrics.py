"""Job metrics, counted by the process that runs the job (a web worker when jobs run
in process, `townsquare worker` otherwise; both merge into /metrics in multiprocess
mode, and the worker also serves its own /metrics)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult

JOB_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STARTED = "_townsquare_started"


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.finished = Counter(
            "townsquare_jobs_finished",
            "Job runs by task and outcome (succeeded, failed); a failed run may be retried.",
            ["task", "outcome"],
            registry=registry,
        )
        self.retried = Counter(
            "townsquare_jobs_retried",
            "Failed job runs scheduled to run again after a backoff delay.",
            ["task"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "townsquare_jobs_dead_lettered",
            "Jobs that failed and will not run again (attempts exhausted, or not retryable).",
            ["task"],
            registry=registry,
        )
        self.duration = Histogram(
            "townsquare_job_duration_seconds",
            "Time a job run took, by task.",
            ["task"],
            buckets=JOB_DURATION_BUCKETS,
            registry=registry,
        )


class MetricsMiddleware(TaskiqMiddleware):
    """Counts every run of every job, whatever its outcome."""

    def __init__(self, metrics: JobMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        message.labels[_STARTED] = time.monotonic()
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        started = message.labels.pop(_STARTED, None)
        if isinstance(started, float):
            self.metrics.duration.labels(message.task_name).observe(time.monotonic() - started)
        outcome = "failed" if result.is_err else "succeeded"
        self.metrics.finished.labels(message.task_name, outcome).inc()
