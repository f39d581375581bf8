from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ENV"}}
    return subprocess.run(
        [sys.executable, "-m", "townsquare.cli", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "secret",
    [None, "dev-only-insecure-secret-key-change-me", "short-secret"],
    ids=["missing", "default", "short"],
)
def test_serve_in_production_with_weak_secret_exits_nonzero_with_clear_message(
    tmp_path: Path, secret: str | None
) -> None:
    env = {"ENV": "production", **({"SECRET_KEY": secret} if secret else {})}
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing to start" in result.stderr
    assert "SECRET_KEY must be set to a random string of at least 32 characters" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may be created before the check"


def test_check_config_with_strong_secret_in_production_succeeds(tmp_path: Path) -> None:
    env = {"ENV": "production", "SECRET_KEY": "x" * 48, "SMTP_URL": "smtp://mail.example:587"}
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration valid (ENV=production)" in result.stdout


def test_check_config_with_bad_rate_limit_names_the_variable(tmp_path: Path) -> None:
    result = run_cli("check-config", env={"RATE_LIMIT_LOGIN": "lots"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "RATE_LIMIT_LOGIN" in result.stderr


def test_check_config_in_production_without_smtp_url_names_it(tmp_path: Path) -> None:
    result = run_cli(
        "check-config", env={"ENV": "production", "SECRET_KEY": "x" * 48}, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "SMTP_URL must be set when ENV=production" in result.stderr
