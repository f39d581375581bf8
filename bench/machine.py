"""The machine a run is on, and where its CPU went during a measurement.

A run's window is judged by /proc/stat: the CPU time the whole machine spent busy
(including steal), less what this benchmark's own processes used (the coordinator and
the wrk it reaps, the servers, the load generators, the private redis-server and the
PostgreSQL backends of the bench databases). What is left is foreign load: another
program competing for the two cores, which makes the run's figures wrong. Such runs
are thrown away, counted, and run again.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata

import psutil

TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat() -> tuple[float, float]:
    """(busy seconds, steal seconds) of the whole machine since boot."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK, steal / TICK


def _cpu_seconds(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class CpuSample:
    wall: float
    busy_cores: float
    ours_cores: float
    steal_cores: float
    per_process: dict[str, float] = field(default_factory=dict)  # name -> CPU seconds

    @property
    def foreign_cores(self) -> float:
        return max(0.0, self.busy_cores - self.ours_cores)


class CpuWatch:
    """Start and stop around one measured window; `tracked()` names the processes that
    are this benchmark's, looked up at the start of each window."""

    def __init__(self, tracked: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self.tracked = tracked
        self._start: tuple[float, float, float, dict[int, tuple[str, float]]] | None = None

    def start(self) -> None:
        procs = {}
        for name, pid in self.tracked():
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                procs[pid] = (name, seconds)
        busy, steal = _proc_stat()
        self._start = (time.perf_counter(), busy, steal, procs)

    def stop(self) -> CpuSample:
        assert self._start is not None, "start() first"
        began, busy0, steal0, procs = self._start
        busy, steal = _proc_stat()
        wall = time.perf_counter() - began
        per_process: dict[str, float] = {}
        ours = 0.0
        for pid, (name, before) in procs.items():
            after = _cpu_seconds(pid)
            used = 0.0 if after is None else max(0.0, after - before)
            per_process[name] = per_process.get(name, 0.0) + used
            ours += used
        return CpuSample(
            wall=wall,
            busy_cores=(busy - busy0) / wall,
            ours_cores=ours / wall,
            steal_cores=(steal - steal0) / wall,
            per_process=per_process,
        )


def postgres_backends(databases: Iterable[str]) -> list[tuple[str, int]]:
    """The PostgreSQL server processes serving the bench databases (by process title)."""
    marks = [f" {name} " for name in databases]
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(proc.info.get("cmdline") or ()) + " "
        is_postgres = proc.info.get("name") == "postgres" or title.startswith("postgres:")
        if is_postgres and any(mark in title for mark in marks):
            found.append(("postgres", proc.pid))
    return found


def _version_of(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def describe(extra: dict[str, str]) -> dict[str, str]:
    """Machine and software versions, for the results' header."""
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = [
        "townsquare",
        "fastapi",
        "starlette",
        "uvicorn",
        "pydantic",
        "sqlalchemy",
        "asyncpg",
        "redis",
        "websockets",
        "python-socketio",
        "python-engineio",
        "picows",
        "uvloop",
    ]
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    commit = _version_of(["git", "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit + (" (uncommitted changes)" if dirty else ""),
        "cpu": f"{cpu}, {psutil.cpu_count()} logical cores",
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "wrk": _version_of(["wrk", "--version"]).split(" [")[0],
        "redis-server": _version_of(["redis-server", "--version"]).split(" sha=")[0],
        **extra,
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }
