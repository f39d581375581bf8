from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.platform.conftest import serve_app

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
# Series names a histogram family adds (a counter's TYPE line already ends in _total).
SUFFIXES = {"_bucket": "histogram", "_count": "histogram", "_sum": "histogram"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must check the alert rules", pytrace=False)
        pytest.skip(message)
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60, check=False
    )


def test_alert_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 rules found" in result.stdout


def test_alert_rules_fire_above_thresholds_and_not_below() -> None:
    result = run_promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_cover_the_four_seed_thresholds() -> None:
    text = RULES.read_text()
    for threshold in ("> 0.5", "> 0.01", "> 0.8", "> 0.9"):
        assert threshold in text


async def test_every_metric_in_alert_rules_is_exported(
    custom_app: Callable[..., FastAPI],
) -> None:
    async with serve_app(custom_app()) as client:
        await client.get("/health")
        exported = (await client.get("/metrics")).text
    names = set(re.findall(r"\btownsquare_[a-z0-9_]+", RULES.read_text()))
    assert len(names) >= 7
    declared = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exported, re.MULTILINE))
    for name in names:
        # A series name is a family plus the suffix its type gives it.
        family, kind = name, "counter" if name.endswith("_total") else "gauge"
        for suffix, suffix_kind in SUFFIXES.items():
            if name.endswith(suffix):
                family, kind = name.removesuffix(suffix), suffix_kind
                break
        assert declared.get(family) == kind, f"{name}: /metrics has no {kind} {family}"
