"""schemathesis against a real server: every check, with and without a token.

The OpenAPI document must name every status the API answers, accept what it allows
and refuse what it refuses. A fixed seed and a bounded number of examples keep this
run short and repeatable; `make fuzz` runs the same with many more examples.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.support.server import ServerProcess, run_server

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "1")
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("schemathesis")
    env = {
        "ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "64",
        "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'db.sqlite'}",
        "LOG_LEVEL": "WARNING",
    }
    with run_server(env, folder / "server.log") as process:
        yield process


def _schemathesis(
    server: ServerProcess, cwd: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{server.base_url}/openapi.json",
            "--checks",
            "all",
            "--seed",
            SEED,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--generation-database",
            "none",
            "--no-color",
            "--workers",
            "1",
            *extra,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_schemathesis_without_a_token_finds_nothing(server: ServerProcess, tmp_path: Path) -> None:
    result = _schemathesis(server, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]


def test_schemathesis_with_a_token_finds_nothing(server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        credentials = {"email": "fuzzer@example.com", "password": "fuzzer password"}
        created = http.post("/users", json={"name": "Fuzzer", **credentials})
        assert created.status_code == 201, created.text
        token = http.post(
            "/auth/token",
            data={"username": credentials["email"], "password": credentials["password"]},
        ).json()["access_token"]
    # Ending every session would turn the rest of the run into 401s; the run without a
    # token covers that route.
    result = _schemathesis(
        server,
        tmp_path,
        "--header",
        f"Authorization: Bearer {token}",
        "--exclude-path",
        "/auth/logout-all",
    )
    assert result.returncode == 0, result.stdout[-6000:]
