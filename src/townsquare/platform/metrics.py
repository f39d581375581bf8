"""Prometheus metrics: their definitions, the process sampler and the /metrics route.

Each app builds its own `Metrics` (nothing registers at import). Under gunicorn,
`PROMETHEUS_MULTIPROC_DIR` is set before any worker starts; every worker then writes
its values to files there and /metrics, whichever worker answers, merges all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import HTTPConnection

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
SAMPLE_INTERVAL_SECONDS = 10.0


class Metrics:
    """Every metric the service exports. Rooms code reaches these through
    `app.state.metrics` (for example `broker_lag.observe(seconds)`)."""

    def __init__(self, *, worker_capacity: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_duration = Histogram(
            "townsquare_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.server_errors = Counter(
            "townsquare_http_server_errors",
            "HTTP responses with a 5xx status, by method and route template.",
            ["method", "route"],
            registry=r,
        )
        self.requests_in_flight = Gauge(
            "townsquare_http_requests_in_flight",
            "HTTP requests being served now, per worker.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.websockets_open = Gauge(
            "townsquare_websockets_open",
            "Accepted WebSocket connections open now, per worker.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.websocket_messages_in = Counter(
            "townsquare_websocket_messages_received",
            "WebSocket frames received from clients (counted once a second).",
            registry=r,
        )
        self.websocket_messages_out = Counter(
            "townsquare_websocket_messages_sent",
            "WebSocket frames sent to clients (counted once a second).",
            registry=r,
        )
        self.room_messages = Counter(
            "townsquare_room_messages_stored",
            "Room messages stored by this worker (REST and WebSocket).",
            registry=r,
        )
        self.broker_lag = Histogram(
            "townsquare_broker_lag_seconds",
            "Time from a message's publication to its delivery by this worker's broker.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.resident_memory = Gauge(
            "townsquare_process_resident_memory_bytes",
            "Resident memory of each worker process.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.memory_limit = Gauge(
            "townsquare_memory_limit_bytes",
            "Memory available to the service: the cgroup limit, else the machine's RAM.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.worker_capacity = Gauge(
            "townsquare_worker_capacity",
            "Concurrent connections and requests a worker takes before refusing (503).",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.worker_capacity.set(worker_capacity)
        self.sample_process()

    def sample_process(self) -> None:
        self.resident_memory.set(resident_memory_bytes())
        limit = memory_limit_bytes()
        if limit is not None:
            self.memory_limit.set(limit)

    def render(self) -> bytes:
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    @contextlib.asynccontextmanager
    async def sampling(self, interval: float = SAMPLE_INTERVAL_SECONDS) -> AsyncIterator[None]:
        """Refresh the process gauges every `interval` seconds while the app runs."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                self.sample_process()

        task = asyncio.create_task(loop(), name="metrics-sampler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def resident_memory_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # Not Linux: the peak, in KiB on Linux-likes, is the best the stdlib offers.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_limit_bytes() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        # "max" (v2) or a huge number (v1) means no limit: fall back to the machine's RAM.
        if raw.isdigit() and int(raw) < 1 << 60:
            return int(raw)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(connection: HTTPConnection) -> Response:
    """Prometheus metrics of every worker. Keep this route off the public internet."""
    collected = cast(Metrics, connection.app.state.metrics)
    return Response(collected.render(), media_type=CONTENT_TYPE_LATEST)
