"""Queue overhead per job and live-preview cost per step: runs bench/queue_overhead.py and reports its figures.

bench/queue_overhead.py (kept by the engineer who owns the queue) measures both side by side and
writes bench/results/queue_overhead.json in its own format; this module runs it as it is
documented (`python bench/queue_overhead.py --repeats N --threads T`) and turns that file into
figures of this harness, so they appear in the table and in summary.json.

(Not named queue.py: `python bench/queue_overhead.py` puts bench/ first on sys.path, where a
queue.py would shadow the standard library's `queue`, which torch imports.)
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread
from bench.workspace import REPOSITORY, RESULTS, Workspace

NAME = "queue"
SCRIPT = REPOSITORY / "bench" / "queue_overhead.py"
REPORT = RESULTS / "queue_overhead.json"  # where the script writes, whatever --results says


def run(workspace: Workspace) -> Outcome:
    repeats = workspace.repeats(9)
    command = [sys.executable, str(SCRIPT), "--repeats", str(repeats), "--threads", str(workspace.options.threads)]
    completed = subprocess.run(command, cwd=REPOSITORY, env=workspace.environment(), text=True, capture_output=True)
    print(completed.stdout.rstrip())
    if completed.returncode != 0:
        raise RuntimeError(f"bench/queue_overhead.py failed (status {completed.returncode}): {completed.stderr.strip()[-800:]}")
    report = json.loads(REPORT.read_text(encoding="utf-8"))
    figures = [
        _figure("queue overhead per job (queued / direct)", entry) for entry in report.get("queue_overhead_per_job", [])
    ]
    figures += [
        _figure("live-preview cost per step (watched / not)", entry) for entry in report.get("live_preview_cost_per_step", [])
    ]
    if not figures:
        raise RuntimeError("bench/queue_overhead.py wrote no figures this harness recognises")
    notes = {
        "what": __doc__.strip().splitlines()[0],
        "source": "bench/queue_overhead.py -> bench/results/queue_overhead.json (its full report)",
        "load_average_before_after": report.get("load_average_before_after"),
    }
    return Outcome(figures, notes)


def _figure(name: str, entry: dict) -> Figure:
    ratio = entry["ratio"]
    details = {key: value for key, value in entry.items() if key not in ("case", "ratio", "target", "met")}
    return Figure(
        figure=name,
        case=entry["case"],
        value=Spread.of(ratio.get("runs") or [ratio["median"]]),
        unit="x",
        target=Target.report(entry.get("target", "")),
        met=entry.get("met"),
        details=details,
    )
