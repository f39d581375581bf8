"""The results of a run: a markdown table per section, PNG charts, raw JSON, and the
README's copy of the table."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.harness import Section

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "max_ms")


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def section_table(section: Section) -> str:
    has_latency = any(
        "p99_ms" in run.values or "rtt_p99_ms" in run.values
        for runs in section.runs.values()
        for run in runs
    )
    head = ["arm", f"median {section.unit}", "ratio", "valid runs", "discarded (foreign load)"]
    if has_latency:
        head += ["p50 ms", "p99 ms"]
    head += ["server CPU us/op", "client CPU peak"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, runs in section.runs.items():
        valid = section.valid_runs(arm)
        ratio = section.ratio(arm)
        cells = [
            arm,
            _fmt(section.median(arm), 2) + (" (noisy)" if section.noisy(arm) else ""),
            "-" if ratio is None else f"{ratio:.2f}",
            f"{len(valid)}/{len(runs)}",
            str(section.discarded.get(arm, 0)),
        ]
        if has_latency:
            prefix = "rtt_" if section.median(arm, "rtt_p99_ms") is not None else ""
            cells += [
                _fmt(section.median(arm, f"{prefix}p50_ms"), 2),
                _fmt(section.median(arm, f"{prefix}p99_ms"), 2),
            ]
        server = [r.server_cpu_us for r in valid if r.server_cpu_us is not None]
        cells.append(_fmt(sorted(server)[len(server) // 2], 1) if server else "-")
        cells.append(f"{max(r.client_peak for r in runs):.0%}" if runs else "-")
        rows.append("| " + " | ".join(cells) + " |")
    text = f"**{section.name}: {section.title}**\n\n" + "\n".join(rows) + "\n"
    problems = [
        f"{arm}: {'; '.join(r.problems)}"
        for arm, runs in section.runs.items()
        for r in runs
        if r.problems
    ]
    for line in section.notes + [f"invalid run - {p}" for p in problems]:
        text += f"\n- {line}"
    return text + "\n"


def markdown(sections: list[Section], machine: dict[str, str], command: str) -> str:
    lines = [
        f"Command: `{command}`. Machine: "
        + "; ".join(f"{k} {v}" for k, v in machine.items() if k != "packages")
        + f".\n\nVersions: {machine.get('packages', '')}.\n"
    ]
    lines += [section_table(section) for section in sections]
    return "\n".join(lines)


def _bars(ax: Axes, section: Section, key: str, label: str) -> None:
    arms = list(section.runs)
    values = [section.median(arm, key) or 0.0 for arm in arms]
    ax.barh(arms, values, color="#4c72b0")
    ax.set_xlabel(label)
    ax.set_title(section.title, fontsize=9)
    ax.invert_yaxis()
    for y, value in enumerate(values):
        ax.text(
            value, y, f" {value:,.0f}" if value >= 10 else f" {value:.2f}", va="center", fontsize=8
        )


def _latencies(ax: Axes, section: Section, prefix: str = "") -> None:
    arms = list(section.runs)
    width = 0.8 / len(LATENCY_KEYS)
    for i, key in enumerate(LATENCY_KEYS):
        values = [section.median(arm, prefix + key) or 0.0 for arm in arms]
        ax.barh([y + i * width for y in range(len(arms))], values, height=width, label=key[:-3])
    ax.set_yticks([y + 0.4 - width / 2 for y in range(len(arms))], arms)
    ax.set_xscale("log")
    ax.set_xlabel("ms (log scale)")
    ax.set_title(section.title + " - latency", fontsize=9)
    ax.invert_yaxis()
    ax.legend(fontsize=7)


def charts(sections: list[Section], out: Path) -> list[str]:
    by_name = {s.name: s for s in sections}
    written = []

    def save(fig: Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        written.append(name)

    if "B1" in by_name:
        fig, axes = plt.subplots(2, 1, figsize=(9, 6))
        _bars(axes[0], by_name["B1"], "rps", "requests/s (median)")
        _latencies(axes[1], by_name["B1"])
        save(fig, "b1_http.png")
    if "B1-sweep" in by_name:
        sweep = by_name["B1-sweep"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for family in ("bare + asyncpg", "townsquare /users/{id}"):
            points = sorted(
                (
                    int(arm.rsplit("c=", 1)[1]),
                    sweep.median(arm) or 0.0,
                    sweep.median(arm, "p99_ms") or 0.0,
                )
                for arm in sweep.runs
                if arm.startswith(family)
            )
            axes[0].plot([p[0] for p in points], [p[1] for p in points], marker="o", label=family)
            axes[1].plot([p[0] for p in points], [p[2] for p in points], marker="o", label=family)
        axes[0].set(xlabel="connections", ylabel="requests/s", xscale="log")
        axes[1].set(xlabel="connections", ylabel="p99 ms", xscale="log", yscale="log")
        axes[0].legend(fontsize=7)
        fig.suptitle(sweep.title, fontsize=9)
        save(fig, "b1_sweep.png")
    room = [by_name[n] for n in ("B2-burst", "B2-hot") if n in by_name]
    if room:
        fig, axes = plt.subplots(len(room), 1, figsize=(9, 2.6 * len(room)), squeeze=False)
        for ax, section in zip(axes[:, 0], room, strict=True):
            _bars(ax, section, section.metric, f"{section.unit} (median)")
        save(fig, "b2_throughput.png")
    latency = [(by_name[n], p) for n, p in (("B2-paced", ""), ("B2-hot", "rtt_")) if n in by_name]
    if latency:
        fig, axes = plt.subplots(len(latency), 1, figsize=(9, 3.2 * len(latency)), squeeze=False)
        for ax, (section, prefix) in zip(axes[:, 0], latency, strict=True):
            _latencies(ax, section, prefix)
        save(fig, "b2_latency.png")
    idle = [s for s in sections if s.name.startswith("B3")]
    if idle:
        fig, axes = plt.subplots(len(idle), 1, figsize=(9, 2.2 * len(idle)), squeeze=False)
        for ax, section in zip(axes[:, 0], idle, strict=True):
            _bars(ax, section, section.metric, "KiB per socket")
        save(fig, "b3_idle.png")
    if "B4" in by_name:
        fig, ax = plt.subplots(figsize=(9, 2.4))
        _bars(ax, by_name["B4"], "messages_per_s", "messages/s (median)")
        save(fig, "b4_recovery.png")
    return written


def write(
    sections: list[Section], machine: dict[str, str], out: Path, command: str, readme: Path | None
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(sections, machine, command)
    images = charts(sections, out)
    document = (
        "# Benchmark results\n\n"
        + table
        + "\n"
        + "\n".join(f"![{name}]({name})" for name in images)
    )
    (out / "README.md").write_text(document + "\n")
    raw = {
        "machine": machine,
        "sections": [
            {
                "name": s.name,
                "title": s.title,
                "metric": s.metric,
                "unit": s.unit,
                "baseline": s.baseline,
                "discarded": s.discarded,
                "notes": s.notes,
                "runs": {
                    arm: [
                        {
                            "values": r.values,
                            "valid": r.valid,
                            "problems": r.problems,
                            "client_peak": r.client_peak,
                            "server_cpu_us": r.server_cpu_us,
                            "cpu": asdict(r.cpu),
                        }
                        for r in runs
                    ]
                    for arm, runs in s.runs.items()
                },
            }
            for s in sections
        ],
    }
    (out / "results.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    if readme is not None:
        relative = out.relative_to(readme.parent)
        block = (
            f"{README_START}\n"
            + table.replace("](", f"]({relative}/")
            + "\n"
            + "\n".join(f"![{n}]({relative}/{n})" for n in images)
            + f"\n{README_END}"
        )
        text = readme.read_text()
        pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
        if pattern.search(text):
            readme.write_text(pattern.sub(lambda _: block, text))
    return out / "README.md"
