"""`python -m bench`: every speed and memory figure of issue 7, as ratios measured side by side.

    python -m bench                      # everything (10-15 minutes on a busy 2-core machine)
    python -m bench --quick              # fewer repetitions
    python -m bench --only cache_hit     # one benchmark (repeat --only for more)
    python -m bench --only outpaint_band_real   # heavy, only when named (see OPT_IN)

Prints a table and writes bench/results/<benchmark>.json plus bench/results/summary.json.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.figures import Figure, table, write_benchmark, write_summary
from bench.workspace import REPOSITORY, RESULTS, Options, Workspace

# Name -> module with `run(workspace) -> Outcome` ("module:function" for another function); run in
# this order (the Home page last, as it depends on another engineer's page).
BENCHMARKS = {
    "runner_overhead": "bench.runner_overhead",
    "cache_hit": "bench.cache_hit",
    "large_image": "bench.large_image",
    "outpaint_band": "bench.outpaint_band",
    "outpaint_band_real": "bench.outpaint_band:run_real",
    "segment_click": "bench.segment_click",
    "queue": "bench.queue_figures",
    "job_store": "bench.job_store",
    "model_memory": "bench.model_memory",
    "cpu_speed": "bench.cpu_speed",
    "batch_vs_iopaint": "bench.batch_vs_iopaint",
    "history_listing": "bench.history_listing",
    "grid_rerun": "bench.grid_rerun",
    "home_render": "bench.home_render",
}
# Run only when named with --only: minutes of real-size model work and several GB of RAM.
OPT_IN = {"outpaint_band_real"}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    selected = _selected(arguments.only)
    if arguments.repeats is not None and arguments.repeats < 1:
        parser.error("--repeats must be at least 1")
    if arguments.tiny_pipelines and not all(
        (Path(arguments.tiny_pipelines) / name / "model_index.json").is_file() for name in ("tiny-sd", "tiny-sd-inpaint")
    ):
        parser.error("--tiny-pipelines: DIR must hold tiny-sd/ and tiny-sd-inpaint/ (tests/tiny_pipelines.py's layout)")
    options = Options(
        quick=arguments.quick,
        repeats=arguments.repeats,
        threads=arguments.threads,
        results=Path(arguments.results),
        tiny_pipelines=Path(arguments.tiny_pipelines) if arguments.tiny_pipelines else None,
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPOSITORY))  # `tests.tiny_pipelines` builds the pipelines

    scratch = Path(tempfile.mkdtemp(prefix="canvas-bench-"))
    all_figures: list[Figure] = []
    failed = []
    try:
        workspace = Workspace(scratch, options)
        for name in selected:
            print(f"\n== {name} ==", flush=True)
            started = time.perf_counter()
            settings = {"quick": options.quick, "repeats": options.repeats, "torch_threads": options.threads}
            try:
                module, _, function = BENCHMARKS[name].partition(":")
                outcome = getattr(importlib.import_module(module), function or "run")(workspace)
            except Exception as error:  # one broken benchmark must not hide the others' figures
                traceback.print_exc()
                failed.append(name)
                write_benchmark(options.results, name, None, settings, error=f"{type(error).__name__}: {error}")
                continue
            path = write_benchmark(options.results, name, outcome, settings)
            print(table(outcome.figures))
            print(f"({time.perf_counter() - started:.0f} s; written to {_shown(path)})", flush=True)
            all_figures += outcome.figures
    finally:
        if arguments.keep_scratch:
            print(f"scratch files kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    summary = write_summary(options.results, order=list(BENCHMARKS))
    if all_figures:
        print("\n== all figures of this run ==")
        print(table(all_figures))
    print(f"\nsummary of the latest results: {_shown(summary)}")
    if failed:
        print(f"failed: {', '.join(failed)} (the error is in each one's JSON file)", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (a smoke run, not for conclusions)")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--repeats", type=int, help="repetitions of every figure (default: each benchmark's own)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared machine; 0 = torch's choice)"
    )
    parser.add_argument("--results", default=str(RESULTS), help="folder for the JSON results (default bench/results)")
    parser.add_argument("--tiny-pipelines", metavar="DIR", help="reuse tiny pipelines already built in DIR (tiny-sd, tiny-sd-inpaint)")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the temporary folder (photos, stores, outputs)")
    return parser


def _selected(only: list[str] | None) -> list[str]:
    if not only:
        return [name for name in BENCHMARKS if name not in OPT_IN]
    names = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in names]


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
