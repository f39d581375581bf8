"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py` (or `make serve-prod`).

Everything comes from the same environment variables as the app (config.py): HOST,
PORT, WEB_CONCURRENCY, WORKER_TIMEOUT, GRACEFUL_TIMEOUT, WORKER_CAPACITY, LOG_LEVEL.
An invalid configuration (a weak SECRET_KEY in production, say) stops the master
here, with a clear message and exit status 2, before any worker starts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from townsquare.cli import describe_invalid_settings
from townsquare.config import Settings
from townsquare.platform.logging import logging_config

try:
    _settings = Settings()
except ValidationError as exc:
    print(describe_invalid_settings(exc), file=sys.stderr)
    raise SystemExit(2) from None

wsgi_app = "townsquare.main:create_app()"
worker_class = "townsquare.platform.server.Worker"
workers = _settings.web_concurrency
bind = [f"{_settings.host}:{_settings.port}"]
# A worker that does not heartbeat for this long is killed and replaced.
timeout = _settings.worker_timeout
# SIGTERM: stop accepting, drain WebSockets, finish requests, run the lifespan shutdown,
# all within this many seconds; then gunicorn kills what is left.
graceful_timeout = int(_settings.graceful_timeout)
keepalive = 5
# The uvicorn worker takes this as its concurrency limit (beyond it: 503).
worker_connections = _settings.worker_capacity
# Trust X-Forwarded-For only from these proxies (FORWARDED_ALLOW_IPS): the client
# address that rate limits key on (README, "Behind a proxy").
forwarded_allow_ips = _settings.forwarded_allow_ips
logconfig_dict = logging_config(_settings.log_level)
# gunicorn's runtime control socket (gunicornc) is not used; one less file in $HOME.
control_socket_disable = True

# Prometheus multiprocess mode: each worker writes its metrics to files in this
# directory and /metrics merges them, whichever worker answers.
_metrics_dir_owned = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _metrics_dir_owned:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="townsquare-metrics-")
_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server: Any) -> None:
    # Files left by a previous run would be counted again: start clean.
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for entry in _metrics_dir.iterdir():
        if entry.is_file():
            entry.unlink()
    if _settings.is_sqlite:
        # Migrate the embedded database once, here, rather than in N racing workers.
        from townsquare.platform import migrations
        from townsquare.platform.database import create_database

        async def migrate() -> None:
            database = create_database(_settings.database_url)
            try:
                await migrations.upgrade(database.engine)
            finally:
                await database.dispose()

        asyncio.run(migrate())


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges (in-flight, open WebSockets, memory) must stop counting.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _metrics_dir_owned:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
