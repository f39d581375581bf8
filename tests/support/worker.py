"""A real `townsquare worker` process, stopped (by its PID) on exit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def worker(
    env: dict[str, str], log: Path, metrics_port: int = 0
) -> Iterator[subprocess.Popen[bytes]]:
    full_env = {**os.environ, **env, "WORKER_METRICS_PORT": str(metrics_port)}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "townsquare.cli", "worker"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
