"""A real gunicorn (the repo's gunicorn.conf.py, uvicorn workers) on a free loopback port."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.server import ServerProcess, run_server

REPO = Path(__file__).resolve().parents[2]
SERVED_APP = "tests.platform.served_app:create_app()"


@contextmanager
def run_gunicorn(
    env: Mapping[str, str], log_path: Path, *, workers: int = 2
) -> Iterator[ServerProcess]:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(REPO / "gunicorn.conf.py"),
        "--chdir",
        str(REPO),
        SERVED_APP,
    ]
    full_env = {"WEB_CONCURRENCY": str(workers), "LOG_LEVEL": "INFO", **env}
    with run_server(full_env, log_path, command=command) as server:
        wait_for_workers(server, workers)
        yield server


def wait_for_workers(server: ServerProcess, workers: int, timeout: float = 30) -> None:
    """Until every worker has finished its start-up (each logs it once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.log().count("Application startup complete") >= workers:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{workers} workers not up within {timeout}s:\n{server.log()}")


def fresh_get(url: str) -> httpx.Response:
    """A GET on a new connection, so the kernel may hand it to any worker."""
    with httpx.Client(timeout=10) as client:
        return client.get(url, headers={"Connection": "close"})
