"""Figures, the table on stdout and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    baseline: str | None = None  # key of the scenario's baseline this figure is divided by
    ratio: float | None = None


@dataclass
class Outcome:
    """What one scenario measured: figures (each with its ratio to a baseline measured
    in the same run), the baselines themselves, details for the JSON, notes."""

    scenario: str
    figures: list[Figure] = field(default_factory=list)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float | None, unit: str, baseline: str | None = None) -> Figure:
        ratio = None
        if baseline is not None and value is not None:
            base = baseline_value(self.baselines.get(baseline))
            ratio = value / base if base else None
        figure = Figure(name, value, unit, baseline, ratio)
        self.figures.append(figure)
        return figure

    def figure(self, name: str) -> float | None:
        return next((f.value for f in self.figures if f.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "figures": {
                f.name: {"value": f.value, "unit": f.unit, "baseline": f.baseline, "ratio": f.ratio}
                for f in self.figures
            },
            "ratios": {f.name: f.ratio for f in self.figures if f.ratio is not None},
            "baselines": self.baselines,
            "details": self.details,
            "notes": self.notes,
        }


def baseline_value(baseline: dict[str, Any] | None) -> float | None:
    """The number a baseline contributes to a ratio: transfers/s for the set-based
    posting, tps for pgbench, `value` for any other (e.g. a same-run measurement)."""
    if not baseline:
        return None
    for key in ("transfers_per_s", "tps", "value"):
        if baseline.get(key) is not None:
            return float(baseline[key])
    return None


def baseline_label(baseline: dict[str, Any] | None) -> str:
    if not baseline:
        return ""
    value = baseline_value(baseline)
    if "transfers_per_s" in baseline:
        return f"set-based {value:,.0f} transfers/s"
    if "tps" in baseline:
        return f"{baseline['name']} {value:,.0f} tps"
    return f"{baseline.get('name', '')} {_number(value)} {baseline.get('unit', '')}".strip()


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def table(outcomes: list[Outcome]) -> str:
    rows = [("scenario", "figure", "value", "baseline (same run)", "ratio")]
    for outcome in outcomes:
        for f in outcome.figures:
            rows.append(
                (
                    outcome.scenario,
                    f.name,
                    f"{_number(f.value)} {f.unit}".strip(),
                    baseline_label(outcome.baselines.get(f.baseline)) if f.baseline else "",
                    f"{f.ratio:.3f}" if f.ratio is not None else "",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i != 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for outcome in outcomes:
        for note in outcome.notes:
            lines.append(f"note ({outcome.scenario}): {note}")
    return "\n".join(lines)


def git_info(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
