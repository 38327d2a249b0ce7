"""Comparison grid re-run: a 2x2 grid through the queue, then the same grid again (all cache hits).

Timed on the user's path: from submitting the cells (`RequestRun` fed to the shared `JobQueue`, as
the Compare page does) to every cell's PNG bytes in hand. The first run must run every cell (none
cached: asserted), the re-run must serve every cell from the store (asserted); target: the re-run
takes at most 5 % of the first run. Each repeat uses new seeds so the first run is never a hit.
"""

from __future__ import annotations

import time

from bench.figures import Figure, Outcome, Target
from bench.measure import SideBySide, Spread, Timing, timed
from bench.workspace import Workspace, set_torch_threads

NAME = "grid_rerun"
LIMIT = 0.05
STEPS = 4


def run_grid(queue, grid) -> list:
    from core.batch import RequestRun

    run = RequestRun(grid.run_order(), kind="grid")
    while not run.finished(queue):
        run.submit_more(queue, "bench", in_flight=4)
        time.sleep(0.005)
    if any(item.png is None for item in run.items):
        raise RuntimeError(f"a cell failed: {run.problems()}")
    return [item.final for item in run.items]


def timed_grid(queue, grid) -> tuple[Timing, list]:
    statuses = []
    timing = timed(lambda: statuses.extend(run_grid(queue, grid)))
    return timing, statuses


def run(workspace: Workspace) -> Outcome:
    from core.jobs import JobQueue
    from core.pool import ModelPool
    from core.requests import GenerateRequest
    from core.runner import Studio
    from core.store import ResultStore
    from core.xy_grid import build_grid, parse_axis

    set_torch_threads(workspace.options.threads)
    studio = Studio(workspace.catalogue(), ModelPool(2), ResultStore(workspace.scratch("grid-store"), 8 << 30))
    queue = JobQueue(studio, max_per_session=4)
    try:
        base = GenerateRequest(
            model="tiny-sd", prompt="a lighthouse at dusk", width=512, height=512, num_inference_steps=STEPS
        )
        run_grid(queue, build_grid(base, parse_axis("seed", "1, 2")))  # load the model, warm every path
        firsts, reruns = [], []
        for repeat in range(workspace.repeats(5)):
            seeds = parse_axis("seed", f"{100 + 2 * repeat}, {101 + 2 * repeat}")
            guidance = parse_axis("guidance", "3, 7")
            timing, statuses = timed_grid(queue, build_grid(base, seeds, guidance))
            if any(status.cached for status in statuses):
                raise RuntimeError("the first run of a grid was served from the store; it must run")
            firsts.append(timing)
            timing, statuses = timed_grid(queue, build_grid(base, seeds, guidance))
            if not all(status.cached for status in statuses):
                raise RuntimeError("the re-run of a grid ran a cell; it must come from the store")
            reruns.append(timing)
    finally:
        queue.shutdown()
    pairs = SideBySide(tuple(reruns), tuple(firsts))
    figure = Figure(
        figure="grid re-run (all hits) / first run",
        case=f"2x2 grid (seed x guidance), tiny-sd 512 px, {STEPS} steps, through the queue",
        value=Spread.of(pairs.ratios),
        unit="x",
        target=Target.at_most(LIMIT, f"<= {LIMIT:.0%}"),
        details=pairs.details("rerun", "first"),
    )
    return Outcome([figure], {"what": __doc__.strip().splitlines()[0]})
