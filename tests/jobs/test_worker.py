"""`townsquare worker` on Redis, with a real web server and a real SMTP server: mail
survives an SMTP outage (delivered once) and a worker killed with SIGKILL mid-job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import TEST_SECRET
from tests.support import databases
from tests.support.brokers import eventually, random_prefix, require_shared_redis
from tests.support.server import ServerProcess, free_port, run_server
from tests.support.smtp import MailServer, running_mail_server, token_in
from tests.support.worker import worker

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

WAIT = 30.0
FAILED = {"task": "mail.send", "outcome": "failed"}


@pytest.fixture(scope="module")
async def database_url() -> AsyncIterator[str]:
    url = await databases.create_postgres_database()
    try:
        await databases.migrate(url)
        yield url
    finally:
        await databases.drop_postgres_database(url)


@pytest.fixture
async def mail_server() -> AsyncIterator[MailServer]:
    async with running_mail_server() as server:
        yield server


@pytest.fixture
async def env(database_url: str, mail_server: MailServer) -> dict[str, str]:
    return {
        "ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": database_url,
        "REDIS_URL": await require_shared_redis(),
        "BROKER_CHANNEL_PREFIX": random_prefix(),
        "SMTP_URL": mail_server.url,
        "PUBLIC_URL": "https://chat.example.org",
        "JOB_RETRY_DELAY_SECONDS": "0.2",
        "JOB_RETRY_MAX_DELAY_SECONDS": "1",
        "JOB_TIMEOUT_SECONDS": "5",
        "JOB_CLAIM_AFTER_SECONDS": "6",
    }


@pytest.fixture
def web(env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    with run_server(env, tmp_path / "web.log") as server:
        yield server


async def _signup(http: httpx.AsyncClient, email: str) -> None:
    response = await http.post(
        "/users", json={"name": "Wen", "email": email, "password": "long enough pw"}
    )
    assert response.status_code == 201, response.text


async def _nothing_left_to_send(redis_url: str, prefix: str) -> bool:
    """No job of this deployment is queued, running unacknowledged or waiting to retry."""
    redis = Redis.from_url(redis_url)
    try:
        stream = f"{prefix}jobs"
        pending = await redis.xpending(stream, f"{stream}:workers")
        groups = await redis.xinfo_groups(stream)
        lag = sum(int(group.get("lag") or 0) for group in groups)
        retries = [key async for key in redis.scan_iter(f"{stream}:retries:data:*")]
        return int(pending["pending"]) == 0 and lag == 0 and not retries
    finally:
        await redis.aclose()


def _metric(port: int, name: str, **labels: str) -> float:
    """A sample of the worker's /metrics; 0 while it is not up yet."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_mail_queued_while_smtp_is_down_is_delivered_once_when_it_is_back(
    env: dict[str, str], web: ServerProcess, mail_server: MailServer, tmp_path: Path
) -> None:
    port = free_port()
    await mail_server.stop()
    with worker(env, tmp_path / "worker.log", metrics_port=port):
        async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as http:
            await _signup(http, "down@example.com")
            assert await eventually(
                lambda: _metric(port, "townsquare_jobs_finished_total", **FAILED) >= 2,
                within=WAIT,
            ), (tmp_path / "worker.log").read_text()
            assert mail_server.received == []
            await mail_server.start()
            [mail] = await mail_server.wait_for(1, within=WAIT)
            assert mail["To"] == "down@example.com"
            assert await eventually(
                lambda: _nothing_left_to_send(env["REDIS_URL"], env["BROKER_CHANNEL_PREFIX"]),
                within=WAIT,
            )
            assert len(mail_server.received) == 1
            succeeded = _metric(
                port, "townsquare_jobs_finished_total", task="mail.send", outcome="succeeded"
            )
            assert succeeded == 1
            verified = await http.post("/auth/verify-email", json={"token": token_in(mail)})
            assert verified.status_code == 204


async def test_worker_killed_mid_job_loses_no_mail(
    env: dict[str, str], web: ServerProcess, mail_server: MailServer, tmp_path: Path
) -> None:
    mail_server.stall = True  # the first delivery hangs in DATA
    async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as http:
        with worker(env, tmp_path / "first.log") as first:
            await _signup(http, "killed@example.com")
            async with asyncio.timeout(WAIT):
                await mail_server.stalled.wait()  # the worker is inside the job now
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        mail_server.release()
        assert mail_server.received == []
        second_log = tmp_path / "second.log"
        with worker(env, second_log):
            [mail] = await mail_server.wait_for(1, within=WAIT)
            assert mail["To"] == "killed@example.com"
            assert "left by a worker that stopped" in second_log.read_text()
            assert await eventually(
                lambda: _nothing_left_to_send(env["REDIS_URL"], env["BROKER_CHANNEL_PREFIX"]),
                within=WAIT,
            )
        assert len(mail_server.received) == 1
        verified = await http.post("/auth/verify-email", json={"token": token_in(mail)})
        assert verified.status_code == 204


def test_worker_without_redis_says_why_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "townsquare.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "REDIS_URL is not set" in result.stderr
