"""Docker is not available in CI, so the container files are checked statically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # installed with uvicorn[standard]

REPO = Path(__file__).resolve().parents[2]


def test_dockerfile_is_multi_stage_locked_and_runs_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "uv sync --frozen --no-dev" in text
    assert "COPY pyproject.toml uv.lock" in text
    user_lines = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user_lines
    assert user_lines[-1].split()[1] not in {"root", "0"}
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py"]' in text


def test_compose_runs_app_with_postgresql_redis_and_migration_first() -> None:
    compose: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert {"app", "migrate", "postgres", "redis"} <= set(services)
    env = services["app"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["REDIS_URL"].startswith("redis://")
    assert env["ENV"] == "production"
    assert services["app"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["migrate"]["command"] == ["townsquare", "migrate"]


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "*.db"} <= set(ignored)


def test_compose_runs_a_job_worker_beside_the_app_on_the_same_redis() -> None:
    compose: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    worker = services["worker"]
    assert worker["command"] == ["townsquare", "worker"]
    assert worker["environment"]["REDIS_URL"] == services["app"]["environment"]["REDIS_URL"]
    assert worker["environment"]["SMTP_URL"] == services["app"]["environment"]["SMTP_URL"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "townsquare worker" in (REPO / "gunicorn.conf.py").read_text()
