"""`townsquare worker`: runs the background jobs, apart from the web processes.

With REDIS_URL set, web processes only enqueue jobs; one or more workers (any
number, on any machine) run them: mail sending with retries, the password-reset
lookups, and the periodic purge (sent by whichever worker holds the scheduler
lease). Each worker serves its job metrics on WORKER_METRICS_PORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from prometheus_client import CollectorRegistry, start_http_server

from townsquare.config import Environment, Settings
from townsquare.jobs import JobContext, register_jobs
from townsquare.main import create_jobs_engine
from townsquare.platform import migrations
from townsquare.platform.database import create_database
from townsquare.platform.jobs.engine import is_durable
from townsquare.platform.mail import create_mailer

logger = logging.getLogger("townsquare.worker")


async def run(settings: Settings) -> int:
    if not is_durable(settings.redis_url):
        print(
            "townsquare worker: REDIS_URL is not set, so jobs run inside the web processes; "
            "set REDIS_URL (on the web processes too) to run them here.",
            file=sys.stderr,
        )
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    database = create_database(settings.database_url, pool_size=min(5, settings.job_concurrency))
    if settings.is_sqlite:
        await migrations.upgrade(database.engine)
    registry = CollectorRegistry(auto_describe=True)
    jobs = create_jobs_engine(settings, registry)
    mailer = create_mailer(
        settings.smtp_url.get_secret_value() if settings.smtp_url else None,
        sender=settings.mail_from,
        timeout=settings.smtp_timeout_seconds,
        log_bodies=settings.env is Environment.DEVELOPMENT,
    )
    register_jobs(jobs, JobContext(settings=settings, database=database, mailer=mailer, jobs=jobs))
    metrics_server = None
    if settings.worker_metrics_port:
        metrics_server, _ = start_http_server(
            settings.worker_metrics_port, addr=settings.host, registry=registry
        )
    logger.info("worker started", extra={"concurrency": settings.job_concurrency})
    try:
        await jobs.run_worker(stop, grace=settings.graceful_timeout)
    finally:
        logger.info("worker stopping")
        await jobs.stop()
        await database.dispose()
        if metrics_server is not None:
            with contextlib.suppress(Exception):
                metrics_server.shutdown()
    return 0


def main(settings: Settings) -> int:
    from townsquare.platform.logging import configure_logging

    configure_logging(settings.log_level)
    return asyncio.run(run(settings))
