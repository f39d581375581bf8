"""A real server on a PostgreSQL database behind the code's migrations: it says so at
start, /ready answers 503 naming the schema until `townsquare migrate` ran, and the
500 that a missing table causes meanwhile is logged once, with its request id."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.support import databases
from tests.support.server import run_server
from townsquare.platform import migrations

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

FIRST_REVISION = "4f90f167a043"


@pytest.fixture
async def unmigrated_database_url() -> AsyncIterator[str]:
    url = await databases.create_postgres_database()
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


def _records(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


async def _post_until_closed(
    base_url: str, path: str, payload: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """POST on a keep-alive connection and read until the server closes it. The server
    closes a kept-alive connection only after the app raised, and it logs what was
    raised before it closes: at the end of the stream every copy is in the log."""
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps(payload).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        async with asyncio.timeout(10):
            raw = await reader.read(-1)
    finally:
        writer.close()
    head, _, content = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(content)


async def _migrate(env: dict[str, str], revision: str) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "townsquare.cli", "migrate", revision],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


async def test_server_on_unmigrated_postgresql_is_not_ready_naming_the_schema(
    unmigrated_database_url: str, tmp_path: Path
) -> None:
    env = {"ENV": "test", "SECRET_KEY": TEST_SECRET, "DATABASE_URL": unmigrated_database_url}
    head = ", ".join(sorted(migrations.code_heads()))
    with run_server(env, tmp_path / "server.log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            # Said at start.
            started = [r["message"] for r in _records(server.log()) if r["level"] == "WARNING"]
            assert any(
                "database schema not migrated" in m and "run `townsquare migrate`" in m
                for m in started
            ), started

            ready = await http.get("/ready")
            assert ready.status_code == 503
            checks = ready.json()["checks"]
            assert checks["database"] == "ok"
            assert checks["schema"] == (
                f"not migrated (the code needs {head}): run `townsquare migrate`"
            )

            # A request that needs a table: 500, and its trace in the log once.
            status, body = await _post_until_closed(
                server.base_url,
                "/users",
                {"name": "Early", "email": "early@example.com", "password": "long enough"},
            )
            assert status == 500
            request_id = body["request_id"]
            records = _records(server.log())
            # (Background jobs failing on the missing tables log their own errors.)
            traced = [r for r in records if r.get("exception") and r["request_id"] == request_id]
            assert len(traced) == 1, [r["message"] for r in traced]
            assert not [r for r in records if "Exception in ASGI application" in r["message"]]
            assert traced[0]["request_id"] == request_id
            assert traced[0]["message"] == "unhandled error on POST /users"

            await _migrate(env, FIRST_REVISION)
            behind = (await http.get("/ready")).json()["checks"]["schema"]
            assert behind == (
                f"behind: at {FIRST_REVISION}, the code needs {head}: run `townsquare migrate`"
            )

            await _migrate(env, "head")
            ready = await http.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["schema"] == "ok"
