"""The production server for real: gunicorn, two uvicorn workers, loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_SECRET
from tests.support.databases import missing_service
from tests.support.gunicorn import REPO, fresh_get, run_gunicorn
from townsquare.client import Api, Connection
from townsquare.rooms.protocol import ByeFrame, JoinedFrame, JoinFrame, ServerFrame

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def env(sqlite_database_url: str) -> dict[str, str]:
    # The session's SQLite file is already migrated; both workers share it, and the
    # shared Redis (two workers need a shared broker; a prefix of their own).
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        missing_service("Redis", exc)
    return {
        "ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": sqlite_database_url,
        "REDIS_URL": REDIS_URL,
        "BROKER_CHANNEL_PREFIX": f"test:{uuid.uuid4().hex}:",
        "GRACEFUL_TIMEOUT": "10",
    }


def _spread(url: str, count: int) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(fresh_get, [url] * count))


def test_rate_limit_with_redis_and_two_workers_returns_429_from_every_worker(
    env: dict[str, str], tmp_path: Path
) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    limited = {
        **env,
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_DEFAULT": "10/minute",
        "RATE_LIMIT_KEY_PREFIX": prefix,
    }
    try:
        with run_gunicorn(limited, tmp_path / "server.log") as server:
            responses = _spread(f"{server.base_url}/test/pid", 60)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)

    statuses = [r.status_code for r in responses]
    # One budget shared by both workers: exactly 10 pass, whoever served them.
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 50, statuses
    refusing_workers = {r.headers["x-worker-pid"] for r in responses if r.status_code == 429}
    assert len(refusing_workers) == 2, "only one worker answered; cannot show the limit is shared"
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["detail"] == "Too many requests, retry later"


def test_metrics_with_two_workers_count_the_requests_of_both(
    env: dict[str, str], tmp_path: Path
) -> None:
    with run_gunicorn(env, tmp_path / "server.log") as server:
        responses = _spread(f"{server.base_url}/test/pid", 40)
        assert {r.status_code for r in responses} == {200}
        workers = {r.headers["x-worker-pid"] for r in responses}
        assert len(workers) == 2, "only one worker answered; cannot show the merge"
        text = fresh_get(f"{server.base_url}/metrics").text

    count = re.search(
        r'^townsquare_http_request_duration_seconds_count\{method="GET",route="/test/pid"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert count is not None, text
    assert float(count.group(1)) == 40
    # Per-worker gauges carry the worker's pid.
    for pid in workers:
        assert f'townsquare_worker_capacity{{pid="{pid}"}}' in text


async def test_sigterm_with_slow_request_and_websocket_finishes_request_says_bye_and_exits_zero(
    env: dict[str, str], tmp_path: Path
) -> None:
    graceful_timeout = float(env["GRACEFUL_TIMEOUT"])
    with run_gunicorn(env, tmp_path / "server.log") as server:
        # Real clients of the real /ws: signed in, in a room. (The SQLite file is the
        # session's, shared with other tests: names are unique to this run.)
        unique = uuid.uuid4().hex[:12]
        email, room = f"ann-{unique}@example.com", f"lobby-{unique}"
        async with Api(server.base_url) as api:
            await api.signup(name="Ann", email=email, password="long enough")
            token = (await api.login(email, "long enough")).access_token
            await api.create_room(room)
        sockets: list[Connection] = []
        try:
            for _ in range(4):
                socket = await Connection.open(server.base_url, token, open_timeout=5)
                sockets.append(socket)
                await socket.send(JoinFrame(type="join", room=room))
                await socket.expect(JoinedFrame, within=5, room=room)
            slow: dict[str, httpx.Response] = {}

            def slow_request() -> None:
                slow["response"] = fresh_get(f"{server.base_url}/test/slow?seconds=3")

            thread = threading.Thread(target=slow_request)
            thread.start()
            deadline = time.monotonic() + 10
            # A line in another process's log: nothing to wait on but the file.
            while "slow request started" not in server.log() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            assert "slow request started" in server.log()

            server.process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()

            last_frames: list[ServerFrame | None] = []
            for socket in sockets:
                last: ServerFrame | None = None
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        last = await socket.recv(graceful_timeout)
                last_frames.append(last)
            codes = [socket.close_code for socket in sockets]
            await asyncio.to_thread(thread.join, graceful_timeout)
            exit_code = await asyncio.to_thread(server.process.wait, graceful_timeout + 5)
            took = time.monotonic() - stopped_at
        finally:
            for socket in sockets:
                socket.abort()

    assert slow["response"].status_code == 200
    assert exit_code == 0
    assert took < graceful_timeout
    assert codes == [1012] * len(sockets)
    assert last_frames == [ByeFrame(reason="server restarting")] * len(sockets)
    log = server.log()
    assert "slow request finished" in log
    assert log.count("draining: 1 callback(s)") == 2  # once per worker
    assert log.index("draining:") < log.index("Waiting for application shutdown")


def test_gunicorn_with_weak_secret_in_production_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
        env={"PATH": "/usr/bin:/bin", "ENV": "production", "SECRET_KEY": "short"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_with_two_workers_and_no_redis_refuses_to_start_saying_what_to_set(
    tmp_path: Path,
) -> None:
    # Each worker would have its own in-memory broker: users in one room split by
    # worker. The master refuses before forking any.
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")],
        env={"PATH": "/usr/bin:/bin", "WEB_CONCURRENCY": "2"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "WEB_CONCURRENCY=2 needs a broker shared by the workers" in result.stderr
    assert "Set REDIS_URL=redis://" in result.stderr
    assert "or WEB_CONCURRENCY=1" in result.stderr
    assert "Booting worker" not in result.stderr
    assert "Traceback" not in result.stderr
