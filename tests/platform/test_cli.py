from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from townsquare import cli


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


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_serve_on_a_public_interface_with_the_development_key_exits_2(
    tmp_path: Path, host: str
) -> None:
    result = run_cli("serve", env={"HOST": host}, cwd=tmp_path)
    assert result.returncode == 2
    assert f"HOST={host} listens beyond this machine" in result.stderr
    assert "set SECRET_KEY to a random string of at least 32 characters" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may be created before the check"


def test_serve_host_option_is_checked_like_the_variable(tmp_path: Path) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "HOST=0.0.0.0 listens beyond this machine" in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_check_config_on_loopback_with_the_development_key_succeeds(
    tmp_path: Path, host: str
) -> None:
    result = run_cli("check-config", env={"HOST": host}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_check_config_with_two_workers_and_no_redis_says_to_set_redis_url(
    tmp_path: Path,
) -> None:
    result = run_cli("check-config", env={"WEB_CONCURRENCY": "2"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "WEB_CONCURRENCY=2 needs a broker shared by the workers" in result.stderr
    assert "REDIS_URL" in result.stderr


def test_check_config_with_two_workers_and_redis_is_valid(tmp_path: Path) -> None:
    env = {"WEB_CONCURRENCY": "2", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    result = run_cli("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def test_every_command_and_option_has_help_text() -> None:
    parser = cli._parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    summaries = {action.dest: action.help for action in subparsers._choices_actions}
    for name, command in _commands().items():
        assert summaries.get(name), f"`townsquare --help` says nothing of {name}"
        assert command.description, f"`townsquare {name} --help` has no description"
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"{name} {action.option_strings or action.dest}: no help"


def test_help_lists_every_command_in_plain_words(tmp_path: Path) -> None:
    result = run_cli("--help", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in _commands():
        assert name in result.stdout
    assert "serve the API and the web client in one process" in result.stdout
    assert "usage: townsquare [-h] COMMAND" in result.stdout
    for name in _commands():
        sub = run_cli(name, "--help", env={}, cwd=tmp_path)
        assert sub.returncode == 0, sub.stderr
        assert f"usage: townsquare {name}" in sub.stdout


def test_check_config_in_production_without_smtp_url_names_it(tmp_path: Path) -> None:
    result = run_cli(
        "check-config", env={"ENV": "production", "SECRET_KEY": "x" * 48}, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "SMTP_URL must be set when ENV=production" in result.stderr
