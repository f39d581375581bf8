"""Rounds, arms and verdicts: the part of the benchmark every suite shares.

Arms of one comparison run interleaved (round 1: A B C, round 2: B C A, ...), so slow
drift of the machine hits all of them alike. Each run is watched (machine.CpuWatch):
a run during which foreign processes used more than `foreign_limit` cores is thrown
away, counted and run again (a bounded number of times, within the deadline); a run
whose load generator was saturated, or that lost, doubled or reordered anything, is
kept but marked invalid and left out of the medians.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.loadgen import worker
from bench.machine import CpuSample, CpuWatch

# A load-generator process busier than this (CPU seconds per second) was the limit.
SATURATED = 0.9
# py-spy's time to attach to a server before a profiled window starts.
ATTACH_SECONDS = 0.5
# Before rerunning a run thrown away: let a passing burst of foreign load end.
RETRY_PAUSE = 2.0


@dataclass
class Measured:
    """What one run of an arm produced."""

    values: dict[str, float]
    client_cpu: dict[str, float] = field(default_factory=dict)  # process -> utilization
    problems: list[str] = field(default_factory=list)  # loss, errors: the run is invalid
    server: str | None = None  # whose CPU is reported per operation
    operations: float = 0.0  # deliveries, requests... for server CPU per operation


@dataclass
class Run:
    arm: str
    values: dict[str, float]
    cpu: CpuSample
    client_peak: float
    server_cpu_us: float | None
    problems: list[str]
    noisy: bool = False  # kept only because its retries were spent

    @property
    def valid(self) -> bool:
        return not self.problems


@dataclass
class Section:
    name: str
    title: str
    metric: str  # the headline value's key in Measured.values
    unit: str
    higher_is_better: bool = True
    baseline: str | None = None  # arm the ratios divide by
    runs: dict[str, list[Run]] = field(default_factory=dict)
    discarded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def valid_runs(self, arm: str) -> list[Run]:
        """The valid runs the medians are taken of: the clean ones, or when every run of
        the arm had foreign load (retries spent), the noisy ones (and the table says so)."""
        valid = [r for r in self.runs.get(arm, []) if r.valid]
        clean = [r for r in valid if not r.noisy]
        return clean or valid

    def noisy(self, arm: str) -> bool:
        runs = self.valid_runs(arm)
        return bool(runs) and all(r.noisy for r in runs)

    def median(self, arm: str, key: str | None = None) -> float | None:
        values = [
            r.values[key or self.metric]
            for r in self.valid_runs(arm)
            if (key or self.metric) in r.values
        ]
        return statistics.median(values) if values else None

    def ratio(self, arm: str) -> float | None:
        if self.baseline is None:
            return None
        mine, base = self.median(arm), self.median(self.baseline)
        if mine is None or not base:
            return None
        return mine / base


class Workers:
    """Load-generator processes, each answering one command at a time over a pipe."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.processes: dict[str, tuple[Any, Connection]] = {}
        self.executor = ThreadPoolExecutor(max_workers=64)

    def spawn(self, name: str) -> str:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=worker.main, args=(child,), name=name, daemon=True)
        process.start()
        self.processes[name] = (process, parent)
        return name

    def pids(self) -> list[tuple[str, int]]:
        return [(name, p.pid) for name, (p, _) in self.processes.items() if p.is_alive()]

    async def call(self, name: str, op: str, **args: Any) -> dict[str, Any]:
        _, pipe = self.processes[name]
        pipe.send({"op": op, **args})
        reply: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(
            self.executor, pipe.recv
        )
        if not reply.get("ok"):
            raise WorkerFailed(reply.get("error", "unknown failure"))
        return reply

    async def stop(self, name: str) -> None:
        process, pipe = self.processes.pop(name)
        try:
            pipe.send({"op": "exit"})
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self.executor, pipe.recv), 10
            )
        except (OSError, EOFError, TimeoutError):
            pass
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()

    async def stop_all(self) -> None:
        for name in list(self.processes):
            await self.stop(name)


class WorkerFailed(Exception):
    pass


def utilization(reply: dict[str, Any]) -> float:
    return float(reply["cpu"]) / max(float(reply["wall"]), 1e-9)


class Bench:
    def __init__(
        self,
        *,
        deadline: float,
        foreign_limit: float,
        retries: int,
        tracked: Callable[[], list[tuple[str, int]]],
        databases: Callable[[], list[str]],
        server_pids: Callable[[str], list[int]],
        profile: Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.profile = profile
        self.verbose = verbose
        self.deadline = deadline
        self.foreign_limit = foreign_limit
        self.retries = retries
        self.watch = CpuWatch(tracked, databases)
        self.server_pids = server_pids
        self.sections: list[Section] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def section(self, section: Section) -> Section:
        self.sections.append(section)
        return section

    async def rounds(
        self,
        section: Section,
        arms: dict[str, Callable[[], Awaitable[Measured]]],
        *,
        rounds: int,
        reserve: float = 0.0,
    ) -> None:
        """Run every arm `rounds` times, interleaved; stop early when only `reserve`
        seconds of the run's deadline are left. The first round always runs, so every
        arm has a figure even on a machine slower than the plan."""
        names = list(arms)
        for number in range(rounds):
            if number > 0 and self.remaining() < reserve:
                section.notes.append(f"stopped after {number} round(s): time budget")
                break
            order = names[number % len(names) :] + names[: number % len(names)]
            for arm in order:
                await self.one(section, arm, arms[arm], reserve)

    async def one(
        self,
        section: Section,
        arm: str,
        measure: Callable[[], Awaitable[Measured]],
        reserve: float,
    ) -> None:
        for attempt in range(self.retries + 1):
            self.watch.start()
            profiler = await Profiler.start(self, section, arm)
            try:
                measured = await measure()
            except (WorkerFailed, OSError, RuntimeError, TimeoutError) as exc:
                measured = Measured(values={}, problems=[f"failed: {exc}"[:300]])
            cpu = self.watch.stop()
            if profiler is not None:
                await profiler.stop()
            noisy = cpu.foreign_cores > self.foreign_limit
            # A rerun only when one more run of this length still leaves the reserve.
            if noisy and attempt < self.retries and self.remaining() - cpu.wall > reserve:
                section.discarded[arm] = section.discarded.get(arm, 0) + 1
                print(
                    f"  {section.name} {arm}: thrown away, foreign load "
                    f"{cpu.foreign_cores:.2f} cores ({cpu.describe_foreign()})",
                    flush=True,
                )
                await asyncio.sleep(RETRY_PAUSE)
                continue
            problems = list(measured.problems)
            peak = max(measured.client_cpu.values(), default=0.0)
            if peak > SATURATED:
                problems.append(f"load generator saturated ({peak:.0%} of a core)")
            server_cpu = None
            if measured.server is not None and measured.operations:
                used = cpu.per_process.get(measured.server, 0.0)
                server_cpu = used / measured.operations * 1e6
            section.runs.setdefault(arm, []).append(
                Run(arm, measured.values, cpu, peak, server_cpu, problems, noisy)
            )
            line = summary(section, measured, cpu, problems)
            print(f"  {section.name} {arm}: {line}{' NOISY' if noisy else ''}", flush=True)
            if noisy or self.verbose:
                print(f"    cores, foreign: {cpu.describe_foreign() or '-'}", flush=True)
            if self.verbose:
                print(f"    cores, ours: {cpu.describe_ours()}", flush=True)
            return


class Profiler:
    """py-spy on a townsquare arm's server for one measured window (`--profile`): a
    speedscope file per run, so the profile shows the window, not the set-up."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, bench: Bench, section: Section, arm: str) -> Profiler | None:
        if bench.profile is None or not arm.startswith("townsquare"):
            return None
        server = "ts-sqlite" if "SQLite" in arm else "ts-pg"
        try:
            pids = bench.server_pids(server)
        except KeyError:  # a suite with a server of its own (B3's fresh ones)
            return None
        # The environment's own py-spy (the bench group), also when its bin is off PATH.
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if not pids or spy is None:
            return None
        bench.profile.mkdir(parents=True, exist_ok=True)
        label = f"{section.name}-{arm}".replace(" ", "_").replace("+", "")
        runs = len(section.runs.get(arm, []))
        out = bench.profile / f"{label}-{runs + 1}.speedscope.json"
        argv = [spy, "record", "--pid", str(pids[0]), "--rate", "200", "--nonblocking"]
        argv += ["--format", "speedscope", "--output", str(out)]
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await asyncio.sleep(ATTACH_SECONDS)
        return cls(process)

    async def stop(self) -> None:
        process = self.process
        process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


def summary(section: Section, measured: Measured, cpu: CpuSample, problems: list[str]) -> str:
    value = measured.values.get(section.metric)
    text = f"{value:,.1f} {section.unit}" if value is not None else "no value"
    text += f" (foreign {cpu.foreign_cores:.2f} cores)"
    if problems:
        text += " INVALID: " + "; ".join(problems)
    return text
