"""The topology compose.yaml deploys, with real processes: Docker is not available in
CI, so the test reads the app service's settings from compose.yaml and the image's
from the Dockerfile, and runs what a container would run (the `migrate` service, then
the Dockerfile's CMD) twice, as `docker compose up --scale app=2` would: two
instances of gunicorn with the compose file's workers, sharing PostgreSQL and Redis.
Only the addresses are this machine's (loopback ports, the test's PostgreSQL database
and Redis prefix)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # installed with uvicorn[standard]

from tests.conftest import TEST_SECRET
from tests.scale.cluster import WAIT, check_exactly_once, run_instances
from tests.support import databases
from tests.support.brokers import random_prefix
from tests.support.gunicorn import wait_for_workers

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
# `${NAME:-default}` and `${NAME:?message}`, the two forms compose.yaml uses.
INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}")
# The container's addresses, replaced by this machine's.
CONTAINER_ONLY = {"HOST", "PORT", "PROMETHEUS_MULTIPROC_DIR"}

# compose insists on a mail server; none is needed here (no mail is followed).
SMTP_URL = "smtp://127.0.0.1:25"


def _interpolate(value: str, given: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in given:
            return given[name]
        assert default is not None, f"compose.yaml needs {name} set"
        return default

    return INTERPOLATION.sub(substitute, value)


def compose_app() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return dict(compose["services"])


def compose_environment(given: dict[str, str]) -> dict[str, str]:
    environment = compose_app()["app"]["environment"]
    return {name: _interpolate(str(value), given) for name, value in environment.items()}


def dockerfile_runtime() -> tuple[dict[str, str], list[str]]:
    """The runtime stage's ENV settings and its CMD."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text[text.rindex("\nFROM ") :]
    env: dict[str, str] = {}
    command: list[str] = []
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for pair in line.split()[1:]:
                name, _, value = pair.partition("=")
                env[name] = value
        elif line.startswith("CMD "):
            command = json.loads(line.removeprefix("CMD "))
    return env, command


def test_compose_default_is_a_topology_that_cannot_split() -> None:
    env = compose_environment({"SECRET_KEY": TEST_SECRET, "SMTP_URL": SMTP_URL})
    assert int(env["WEB_CONCURRENCY"]) > 1, "the default should show more than one worker"
    assert env["REDIS_URL"].startswith("redis://")
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
    app = compose_app()["app"]
    # Scalable: a host port range, so `--scale app=2` gives each instance a port.
    assert all("-" in str(mapping).split(":")[0] for mapping in app["ports"]), app["ports"]


@pytest.fixture
async def fresh_database_url() -> AsyncIterator[str]:
    url = await databases.create_postgres_database()
    try:
        yield url
    finally:
        await databases.drop_postgres_database(url)


async def test_compose_default_topology_delivers_every_message_once_in_seq_order(
    fresh_database_url: str, shared_redis_url: str, tmp_path: Path
) -> None:
    image_env, command = dockerfile_runtime()
    assert command[0] == "gunicorn", command
    env = {
        **{k: v for k, v in image_env.items() if k not in CONTAINER_ONLY},
        **compose_environment({"SECRET_KEY": TEST_SECRET, "SMTP_URL": SMTP_URL}),
        "DATABASE_URL": fresh_database_url,
        "REDIS_URL": shared_redis_url,
        "BROKER_CHANNEL_PREFIX": random_prefix(),
        # The test signs up every member from one address, far past the signup limit,
        # and its WebSocket senders send 50 frames at once, past a person's frame rate.
        "RATE_LIMIT_ENABLED": "false",
        "WS_MESSAGES_PER_SECOND": "5000",
    }
    assert env["ENV"] == "production"
    workers = int(env["WEB_CONCURRENCY"])

    # The `migrate` service first, as compose orders it.
    migrate = compose_app()["migrate"]["command"]
    assert migrate == ["townsquare", "migrate"]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "townsquare.cli", *migrate[1:]],
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    argv = [sys.executable, "-m", *command]
    # Four workers start at once here, on a machine that may be busy: a generous bound.
    with run_instances(
        env, tmp_path, 2, command=argv, base_env={}, cwd=REPO, timeout=90
    ) as instances:
        for instance in instances:
            wait_for_workers(instance, workers, timeout=90)
        async with (
            httpx.AsyncClient(base_url=instances[0].base_url, timeout=WAIT) as http_a,
            httpx.AsyncClient(base_url=instances[1].base_url, timeout=WAIT) as http_b,
        ):
            for http in (http_a, http_b):
                ready = await http.get("/ready")
                assert ready.status_code == 200, ready.text
            await check_exactly_once(instances, [http_a, http_b])
