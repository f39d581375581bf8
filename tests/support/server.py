"""A real server process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    ws_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {base_url} not healthy within {timeout}s")


@contextmanager
def run_server(
    env: Mapping[str, str],
    log_path: Path,
    *,
    command: Sequence[str] | None = None,
    port: int | None = None,
    timeout: float = 30,
) -> Iterator[ServerProcess]:
    """Start `townsquare serve` (or `command`) with `env` added; stop it on exit."""
    port = port or free_port()
    full_env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        # End-to-end tests sign up many users from one address; rate-limit tests turn it on.
        "RATE_LIMIT_ENABLED": "false",
        **env,
    }
    argv = list(command or [sys.executable, "-m", "townsquare.cli", "serve"])
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process, timeout)
        yield ServerProcess(process, base_url, f"ws://127.0.0.1:{port}", log_path)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
