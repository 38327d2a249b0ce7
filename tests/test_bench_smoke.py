"""The benchmark harness (`python -m bench`) runs end to end and writes well-formed results.

The benchmarks themselves are not part of the test suite (they take minutes and their figures
depend on the machine); this checks the harness on its smallest real run: the runner-vs-bare-
pipeline figure on the tiny pipelines, with two repetitions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.figures import Figure, Outcome, Target, write_benchmark, write_summary
from bench.measure import Spread, Timing, side_by_side

REPOSITORY = Path(__file__).resolve().parent.parent


def test_side_by_side_alternates_which_runs_first():
    calls = []

    def record(name):
        def timing(repeat):
            calls.append((repeat, name))
            return Timing(wall=2.0 if name == "a" else 1.0, cpu=1.0)

        return timing

    pairs = side_by_side(record("a"), record("b"), 4)

    assert calls == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b"), (3, "b"), (3, "a")]
    assert pairs.ratios == [2.0, 2.0, 2.0, 2.0]
    assert pairs.cpu_ratios == [1.0, 1.0, 1.0, 1.0]


def test_spread_and_summary_keep_every_benchmark(tmp_path):
    spread = Spread.of([3.0, 1.0, 2.0, 10.0])
    assert (spread.median, spread.minimum, spread.maximum) == (2.5, 1.0, 10.0)
    assert spread.runs == (3.0, 1.0, 2.0, 10.0)  # in the order measured

    for name, value in (("first", 0.5), ("second", 2.0)):
        figure = Figure("ratio", name, Spread.of([value]), "x", Target.at_most(1.0))
        write_benchmark(tmp_path, name, Outcome([figure]), settings={})
    summary = json.loads(write_summary(tmp_path).read_text())

    verdicts = {entry["benchmark"]: entry["figures"][0]["met"] for entry in summary["benchmarks"]}
    assert verdicts == {"first": True, "second": False}


@pytest.mark.slow
def test_bench_runs_end_to_end_and_writes_json(tiny_pipeline_dirs, tmp_path):
    results = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "--quick", "--only", "runner_overhead", "--repeats", "2"]
    command += ["--tiny-pipelines", str(tiny_pipeline_dirs["txt2img"].parent), "--results", str(results)]
    completed = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "runner / bare pipeline" in completed.stdout  # the table was printed

    report = json.loads((results / "runner_overhead.json").read_text())
    assert report["benchmark"] == "runner_overhead" and report["error"] is None
    (figure,) = report["figures"]
    assert figure["unit"] == "x" and figure["target"] == "<= 1.05" and isinstance(figure["met"], bool)
    assert len(figure["runs"]) == 2
    assert figure["min"] <= figure["median"] <= figure["max"]
    # Both sides ran the same model on the same input: the same pixels, and comparable times (a cache
    # hit, or a side that skipped the model, would be off by orders of magnitude).
    assert figure["details"]["same_pixels"] is True
    assert 0.3 < figure["median"] < 3.0
    assert figure["details"]["runner_parts_ms"]["encode PNG with parameters"] > 0

    summary = json.loads((results / "summary.json").read_text())
    assert [entry["benchmark"] for entry in summary["benchmarks"]] == ["runner_overhead"]
    assert summary["benchmarks"][0]["figures"][0]["median"] == figure["median"]
