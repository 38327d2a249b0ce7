"""Cache miss ÷ cache hit for the same request (target >= 100), in one process and across processes.

In process: `Studio.run(Studio.prepare(request))` with a new seed (a miss: the model runs and the
result is stored), then the same request again (a hit from the result store). Both include
`prepare`, which for inpainting hashes the input image and mask.

Across processes: the miss as above, in this process; the hit in a fresh Python process that
rebuilds the same request (same photo, mask and seed), opens the same on-disk store and serves it
from there with no model loaded. The hit is timed inside that process from `prepare` to the
result; the whole process's wall time (interpreter start and imports included) is reported too.

The hit must follow its miss, so these pairs cannot alternate their order.

Child process entry (used by the benchmark itself):
    python -m bench.cache_hit --child-hit CATALOGUE STORE CASE SEED
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.figures import Figure, Outcome, Target
from bench.measure import SideBySide, Spread, Timing, timed
from bench.workspace import Workspace, child_report, set_torch_threads

NAME = "cache_hit"
TARGET = 100
STEPS = 8
CASES = ("tiny-sd txt2img 512 px", "tiny-sd-inpaint coffee photo")
_STORE_BYTES = 8 << 30


def make_request(case: str, seed: int):
    """The request of `case` with `seed`; rebuilt identically in a child process."""
    from core.requests import GenerateRequest, InpaintRequest

    if case == CASES[0]:
        return GenerateRequest(
            model="tiny-sd", prompt="a lighthouse at dusk", width=512, height=512, num_inference_steps=STEPS, seed=seed
        )
    if case == CASES[1]:
        from bench.photos import disc_mask, photo

        image = photo("coffee")  # 600x400
        return InpaintRequest(
            model="tiny-sd-inpaint",
            image=image,
            mask=disc_mask(image.size, (0.52, 0.53)),
            prompt="a cup of tea",
            num_inference_steps=STEPS,
            seed=seed,
        )
    raise ValueError(f"unknown case {case!r}")


def run(workspace: Workspace) -> Outcome:
    from core.pool import ModelPool
    from core.runner import Studio
    from core.store import ResultStore

    set_torch_threads(workspace.options.threads)
    store_folder = workspace.scratch("cache-store")
    studio = Studio(workspace.catalogue(), ModelPool(2), ResultStore(store_folder, _STORE_BYTES))
    cases = CASES[:1] if workspace.options.quick else CASES
    repeats = workspace.repeats(7)
    across_repeats = workspace.repeats(5, quick=2)
    figures = []
    for case in cases:
        studio.run(studio.prepare(make_request(case, 0)))  # load the model, warm every path

        def miss(seed: int, case: str = case) -> Timing:
            return _timed_run(studio, make_request(case, seed), expect_cached=False)

        def hit(seed: int, case: str = case) -> Timing:
            return _timed_run(studio, make_request(case, seed), expect_cached=True)

        misses, hits = [], []
        for repeat in range(repeats):
            seed = 3000 + repeat
            misses.append(miss(seed))
            hits.append(hit(seed))
        pairs = SideBySide(tuple(misses), tuple(hits))
        figures.append(
            Figure(
                figure="cache miss / hit, in process",
                case=f"{case}, {STEPS} steps",
                value=Spread.of(pairs.ratios),
                unit="x",
                target=Target.at_least(TARGET),
                details={**pairs.details("miss", "hit"), "hit_ms_median": 1000 * statistics.median(t.wall for t in hits)},
            )
        )

        misses, hits, processes = [], [], []
        environment = workspace.environment()
        for repeat in range(across_repeats):
            seed = 4000 + repeat
            misses.append(miss(seed))
            report = child_report(
                "bench.cache_hit",
                ["--child-hit", str(workspace.catalogue_file), str(store_folder), case, str(seed)],
                environment,
            )
            hits.append(Timing(report["hit_s"], report["hit_cpu_s"]))
            processes.append(report["process_wall_s"])
        pairs = SideBySide(tuple(misses), tuple(hits))
        figures.append(
            Figure(
                figure="cache miss / hit, across processes",
                case=f"{case}, {STEPS} steps",
                value=Spread.of(pairs.ratios),
                unit="x",
                target=Target.at_least(TARGET),
                details={
                    **pairs.details("miss", "hit_in_new_process"),
                    "new_process_wall_s": Spread.of(processes).as_json(),
                },
            )
        )
    notes = {
        "what": __doc__.strip().splitlines()[0],
        "hit_in_new_process": "timed inside a fresh process: prepare + store read and verification, no model loaded",
        "new_process_wall_s": "the whole hit process: interpreter start, imports, the photo, the hit",
    }
    return Outcome(figures, notes)


def _timed_run(studio, request, *, expect_cached: bool) -> Timing:
    results = []
    timing = timed(lambda: results.append(studio.run(studio.prepare(request))))
    if results[0].cached != expect_cached:
        raise RuntimeError(f"expected a cache {'hit' if expect_cached else 'miss'}, got the opposite")
    return timing


def _child_hit(catalogue_file: str, store_folder: str, case: str, seed: int) -> dict:
    """In a fresh process: serve `case` with `seed` from the on-disk store; no model may load."""
    from core.catalogue import Catalogue
    from core.pool import ModelPool
    from core.runner import Studio
    from core.store import ResultStore

    def no_model(spec):
        raise RuntimeError(f"a cache hit must not load {spec.id}")

    studio = Studio(Catalogue.load(Path(catalogue_file)), ModelPool(1, loader=no_model), ResultStore(Path(store_folder), _STORE_BYTES))
    request = make_request(case, seed)  # building the request (decoding the photo) is not part of a hit
    results = []
    timing = timed(lambda: results.append(studio.run(studio.prepare(request))))
    if not results[0].cached:
        raise RuntimeError("the new process did not find the result in the store")
    return {"hit_s": timing.wall, "hit_cpu_s": timing.cpu}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.cache_hit")
    parser.add_argument("--child-hit", nargs=4, metavar=("CATALOGUE", "STORE", "CASE", "SEED"), required=True)
    catalogue_file, store_folder, case, seed = parser.parse_args().child_hit
    print(json.dumps(_child_hit(catalogue_file, store_folder, case, int(seed))))
