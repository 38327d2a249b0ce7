"""What a benchmark reports: figures against their targets, as a table and as JSON files.

Each benchmark writes `<results>/<name>.json`; `summary.json` gathers the latest figures of every
benchmark found in that folder, so `--only NAME` refreshes one benchmark and keeps the others.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Spread

SUMMARY_FILE = "summary.json"
FORMAT = "canvas-studio-bench/1"


@dataclass(frozen=True)
class Target:
    """`median <= limit` (at_most), `median >= limit` (at_least), or nothing to meet (report only)."""

    kind: str  # "at_most" | "at_least" | "report"
    limit: float | None = None
    text: str = ""

    @classmethod
    def at_most(cls, limit: float, text: str = "") -> Target:
        return cls("at_most", limit, text or f"<= {limit:g}")

    @classmethod
    def at_least(cls, limit: float, text: str = "") -> Target:
        return cls("at_least", limit, text or f">= {limit:g}")

    @classmethod
    def report(cls, text: str = "report") -> Target:
        return cls("report", None, text)

    def met_by(self, value: float) -> bool | None:
        if self.kind == "at_most":
            return value <= self.limit
        if self.kind == "at_least":
            return value >= self.limit
        return None


@dataclass(frozen=True)
class Figure:
    figure: str  # what is measured, e.g. "runner / bare pipeline"
    case: str  # on what, e.g. "tiny-sd txt2img 512 px, 8 steps"
    value: Spread  # over the repetitions
    unit: str  # "x" for a ratio, "s" for seconds, "ms" for milliseconds
    target: Target
    met: bool | None = None  # None: computed from the target and the median
    details: dict[str, Any] = field(default_factory=dict)  # the timings behind the figure, and causes

    @property
    def verdict(self) -> bool | None:
        return self.met if self.met is not None else self.target.met_by(self.value.median)

    def as_json(self) -> dict:
        return {
            "figure": self.figure,
            "case": self.case,
            "unit": self.unit,
            **self.value.as_json(),
            "target": self.target.text,
            "met": self.verdict,
            "details": self.details,
        }


@dataclass(frozen=True)
class Outcome:
    """One benchmark's figures and its notes (setup, what was profiled, what to change)."""

    figures: list[Figure]
    notes: dict[str, Any] = field(default_factory=dict)


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }


def write_benchmark(folder: Path, name: str, outcome: Outcome | None, settings: dict, error: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "format": FORMAT,
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "settings": settings,
        "figures": [figure.as_json() for figure in outcome.figures] if outcome else [],
        "notes": outcome.notes if outcome else {},
        "error": error,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(_finite(record), indent=2) + "\n", encoding="utf-8")
    return path


def write_summary(folder: Path, order: Sequence[str] = ()) -> Path:
    """Every figure of every benchmark file in `folder` (the latest run of each), benchmarks named
    in `order` first, in that order."""
    benchmarks = []
    for path in sorted(folder.glob("*.json")):
        if path.name == SUMMARY_FILE:
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            continue  # e.g. queue_overhead.json, written by bench/queue_overhead.py in its own format
        benchmarks.append(
            {
                "benchmark": record["benchmark"],
                "when": record["when"],
                "error": record.get("error"),
                "figures": [
                    {key: figure[key] for key in ("figure", "case", "unit", "median", "min", "max", "q1", "q3", "target", "met")}
                    for figure in record["figures"]
                ],
            }
        )
    rank = {name: index for index, name in enumerate(order)}
    benchmarks.sort(key=lambda entry: (rank.get(entry["benchmark"], len(rank)), entry["benchmark"]))
    summary = {"format": FORMAT, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "benchmarks": benchmarks}
    path = folder / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a measurement that produced one is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def format_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.3f}x"


def table(figures: list[Figure]) -> str:
    header = ("figure", "case", "median", "min-max", "IQR", "target", "met", "CPU-time ratio")
    rows = [header]
    for figure in figures:
        spread = figure.value
        verdict = figure.verdict
        rows.append(
            (
                figure.figure,
                figure.case,
                format_value(spread.median, figure.unit),
                f"{format_value(spread.minimum, figure.unit)}-{format_value(spread.maximum, figure.unit)}",
                f"{format_value(spread.q1, figure.unit)}-{format_value(spread.q3, figure.unit)}",
                figure.target.text,
                "-" if verdict is None else ("yes" if verdict else "NO"),
                _cpu_ratio(figure),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cpu_ratio(figure: Figure) -> str:
    """The median ratio of CPU times, where the figure has one (see bench/measure.py)."""
    cpu = figure.details.get("cpu_time_ratio")
    return format_value(cpu["median"], "x") if isinstance(cpu, dict) else ""
