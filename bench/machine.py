"""The machine a run is on, and where its CPU went during a measurement.

A run's window is judged by /proc/stat: the CPU time the whole machine spent busy
(including steal), less what this benchmark's own processes used. What is left is
foreign load: another program competing for the two cores, which makes the run's
figures wrong. Such runs are thrown away, counted, and run again.

Ours are: the processes `tracked()` names (the coordinator and the wrk it reaps, the
servers, the load generators, the private redis-server) and every descendant of
them, looked up at both ends of the window, so a child born during it counts (all
of its CPU: it was born inside the window); and the PostgreSQL backends of the bench
databases, which come and go with a pool's connections. Those are watched during the
window by a thread that reads the postmaster's children every POLL seconds and keeps
the last CPU reading of each backend of ours, so a backend that ends before the
window does still counts up to its last reading (only one that starts and ends
between two readings, a few milliseconds of CPU, goes unseen and counts as foreign).

Every process is read at both ends, so the CPU of the others can be named too
(`CpuSample.foreign`).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata

import psutil

TICK = os.sysconf("SC_CLK_TCK")
# Seconds between two readings of the PostgreSQL backends during a window.
POLL = 0.1
# Foreign processes named in a sample: the busiest few.
NAMED = 5


def _proc_stat() -> tuple[float, float]:
    """(busy seconds, steal seconds) of the whole machine since boot."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK, steal / TICK


def _times_seconds(times: psutil._common.pcputimes) -> float:
    """A process's CPU, with that of the children it reaped (wrk under the coordinator)."""
    return float(times.user + times.system + times.children_user + times.children_system)


def _stat_seconds(pid: int) -> float | None:
    """One process's CPU straight from /proc/<pid>/stat (cheap enough to poll)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the command: state is field 3, utime 14 ... cstime 17 (1-based).
    return sum(int(x) for x in fields[11:15]) / TICK


@dataclass(frozen=True)
class _Seen:
    """A process at one end of a window."""

    name: str
    title: str
    created: float
    cpu: float  # with the CPU of the children it reaped
    own_cpu: float  # without
    parent: int

    @property
    def label(self) -> str:
        """How a foreign process is named: a PostgreSQL backend by its title (whose
        database), anything else by its name."""
        return self.title[:60] if self.title.startswith("postgres:") else self.name


def _snapshot() -> dict[int, _Seen]:
    seen = {}
    for proc in psutil.process_iter(["name", "cmdline", "create_time", "cpu_times", "ppid"]):
        info = proc.info
        times = info.get("cpu_times")
        if times is None:
            continue
        title = " ".join(info.get("cmdline") or ()) or (info.get("name") or "?")
        seen[proc.pid] = _Seen(
            info.get("name") or "?",
            title,
            float(info.get("create_time") or 0.0),
            _times_seconds(times),
            float(times.user + times.system),
            int(info.get("ppid") or 0),
        )
    return seen


def _is_backend_of(title: str, marks: list[str]) -> bool:
    return title.startswith("postgres:") and any(mark in title + " " for mark in marks)


def _descendants(roots: dict[int, str], seen: dict[int, _Seen]) -> dict[int, str]:
    """Each tracked process and everything under it, named after its tracked ancestor."""
    children: dict[int, list[int]] = {}
    for pid, proc in seen.items():
        children.setdefault(proc.parent, []).append(pid)
    named = dict(roots)
    stack = list(roots)
    while stack:
        pid = stack.pop()
        for child in children.get(pid, ()):
            if child not in named:
                named[child] = f"{named[pid]} child"
                stack.append(child)
    return named


@dataclass
class CpuSample:
    wall: float
    busy_cores: float
    ours_cores: float
    steal_cores: float
    per_process: dict[str, float] = field(default_factory=dict)  # name -> CPU seconds
    # The busiest processes that were not ours: "name pid" -> CPU seconds.
    foreign: dict[str, float] = field(default_factory=dict)

    @property
    def foreign_cores(self) -> float:
        return max(0.0, self.busy_cores - self.ours_cores)

    def describe_foreign(self) -> str:
        """The named foreign processes, in cores: what to blame for a noisy run (with the
        hypervisor's steal, and the rest: smaller processes and those that came and
        went inside the run)."""
        named = [f"{name} {cpu / self.wall:.2f}" for name, cpu in self.foreign.items()]
        unnamed = self.foreign_cores - self.steal_cores - sum(self.foreign.values()) / self.wall
        if self.steal_cores >= 0.01:
            named.append(f"steal {self.steal_cores:.2f}")
        if unnamed >= 0.01:
            named.append(f"the rest {unnamed:.2f}")
        return ", ".join(named)

    def describe_ours(self) -> str:
        busiest = sorted(self.per_process.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {cpu / self.wall:.2f}" for name, cpu in busiest if cpu > 0)


class _BackendPoller(threading.Thread):
    """During a window: the PostgreSQL backends of the bench databases, read every POLL
    seconds (the postmaster's children, each title read once), with the last CPU
    reading of each."""

    def __init__(self, postmasters: set[int], marks: list[str]) -> None:
        super().__init__(name="bench-backends", daemon=True)
        self.postmasters = postmasters
        self.marks = marks
        self.verdicts: dict[int, bool] = {}  # pid -> one of ours
        self.last: dict[int, float] = {}  # pid of ours -> last CPU seconds read
        self.stopping = threading.Event()

    def run(self) -> None:
        while True:
            self.poll()
            if self.stopping.wait(POLL):
                self.poll()
                return

    def poll(self) -> None:
        for postmaster in self.postmasters:
            try:
                with open(f"/proc/{postmaster}/task/{postmaster}/children") as listing:
                    pids = [int(x) for x in listing.read().split()]
            except OSError:
                continue
            for pid in pids:
                verdict = self.verdicts.get(pid)
                if verdict is None:
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                            title = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
                    except OSError:
                        continue
                    verdict = self.verdicts[pid] = _is_backend_of(title.strip(), self.marks)
                if verdict:
                    seconds = _stat_seconds(pid)
                    if seconds is not None:
                        self.last[pid] = seconds


class CpuWatch:
    """Start and stop around one measured window. `tracked()` names this benchmark's
    processes (their descendants are ours too) and `databases()` its PostgreSQL
    databases, whose backends are ours."""

    def __init__(
        self,
        tracked: Callable[[], Iterable[tuple[str, int]]],
        databases: Callable[[], Iterable[str]] = lambda: (),
    ) -> None:
        self.tracked = tracked
        self.databases = databases
        self._start: tuple[float, float, float, dict[int, _Seen]] | None = None
        self._poller: _BackendPoller | None = None

    def start(self) -> None:
        seen = _snapshot()
        marks = [f" {name} " for name in self.databases()]
        postmasters = {
            proc.parent
            for proc in seen.values()
            if proc.title.startswith("postgres:") and proc.parent in seen
        }
        self._poller = None
        if marks and postmasters:
            self._poller = _BackendPoller(postmasters, marks)
            self._poller.start()
        busy, steal = _proc_stat()
        self._start = (time.perf_counter(), busy, steal, seen)

    def stop(self) -> CpuSample:
        assert self._start is not None, "start() first"
        began, busy0, steal0, before = self._start
        busy, steal = _proc_stat()
        wall = time.perf_counter() - began
        after = _snapshot()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stopping.set()
            poller.join()
        window_start = time.time() - wall

        # Ours, at either end of the window: the tracked, their descendants, the backends.
        ours: dict[int, str] = {}
        for end in (before, after):
            roots = {pid: name for name, pid in self.tracked() if pid in end}
            ours |= _descendants(roots, end)
        marks = [f" {name} " for name in self.databases()]
        for end in (before, after):
            for pid, proc in end.items():
                if pid not in ours and _is_backend_of(proc.title, marks):
                    ours[pid] = "postgres"
        if poller is not None:
            ours |= {pid: "postgres" for pid, mine in poller.verdicts.items() if mine}

        def used(pid: int, *, reaped: bool = True) -> float:
            """CPU seconds of one process inside the window (with that of the children
            it reaped in it, unless not `reaped`)."""
            first, last = before.get(pid), after.get(pid)
            if last is not None and first is not None and last.created != first.created:
                first = None  # the pid was reused: a new process
            if last is not None:
                end_cpu: float | None = last.cpu if reaped else last.own_cpu
            else:  # gone: a backend's last reading, else unknown (its parent reaped it)
                end_cpu = poller.last.get(pid) if poller is not None else None
            if end_cpu is None:
                return 0.0
            if first is not None:
                return max(0.0, end_cpu - (first.cpu if reaped else first.own_cpu))
            # Born during the window: all of it. Missed at the start although older
            # (a race of the listing): nothing known of its share, none is claimed.
            created = last.created if last is not None else window_start
            return end_cpu if created >= window_start - 0.05 else 0.0

        per_process: dict[str, float] = {}
        for pid, name in ours.items():
            per_process[name] = per_process.get(name, 0.0) + used(pid)
        # Named by what each ran itself: a shell's reaped children ran before the window.
        foreign = {
            f"{(after.get(pid) or before[pid]).label} [{pid}]": used(pid, reaped=False)
            for pid in set(before) | set(after)
            if pid not in ours
        }
        busiest = sorted(foreign.items(), key=lambda kv: -kv[1])[:NAMED]
        ours_seconds = sum(per_process.values())
        return CpuSample(
            wall=wall,
            busy_cores=(busy - busy0) / wall,
            ours_cores=ours_seconds / wall,
            steal_cores=(steal - steal0) / wall,
            per_process=per_process,
            foreign={name: cpu for name, cpu in busiest if cpu > 0},
        )


def postgres_backends(databases: Iterable[str]) -> list[tuple[str, int]]:
    """The PostgreSQL server processes serving the bench databases (by process title)."""
    marks = [f" {name} " for name in databases]
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(proc.info.get("cmdline") or ())
        if _is_backend_of(title, marks):
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
