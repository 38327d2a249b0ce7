"""Extend a 4000x3000 photo by a 512-px band on the right ÷ the same band on a 1000x750 photo (target <= 1.5).

The model runs on the band's strip at its working resolution (core/outpaint.py: diffusion models
on tiles of the strip; a native-size remover such as OpenCV on the whole strip scaled to 256²), so
the model's work is the same for both photos; what grows is the band work (4x the band's pixels:
build, blend, store) and the photo's own share of the output (the PNG the user receives holds the
whole 13.5 MP frame against 1.1 MP). Two figures per model, both real misses (a new seed every
repetition and one pixel of the photo changed, since OpenCV ignores seeds; each result checked not
to be a cache hit), image loaded:

- the user's path: submit the `OutpaintRequest` to the job queue (as the pages and the API do),
  wait, and take the result's PNG bytes (what the user downloads);
- the extension itself: `Studio.run(Studio.prepare(...))` with a result store (the band stored as
  PNG), without the whole-frame PNG.

Models: the tiny SD inpainting pipeline at a 512-px working resolution (8 steps: its UNet is ~100x
cheaper than a real one, so this is a worst case for the fixed costs) and OpenCV Telea (a remover:
its fill is the result). The photo is scikit-image's coffee upscaled (Lanczos) to each size. One
run per size is profiled (cProfile) to show where the time goes.

The real-size case (`python -m bench --only outpaint_band_real`, not in the default run: ~5 GB of
weights built once, ~5 GB of RAM, several minutes; run it alone under
`flock /work/coord/heavy.lock`): the same two extensions on the user's path with SD 1.5
Inpainting's architecture at real size and random weights (bench/architectures.py: 9-channel UNet,
CLIP-L, SD VAE, TAESD as the fast decoder), registered in a catalogue file like any model and
loaded by the app's pool, in a fresh process (`--child`) on 2 torch threads; 2 steps, guidance 7.5.
Each size's wait is split into the queue's run (the model on the band's tile) and the whole-frame
PNG bytes; peak RSS (VmHWM) and the load average are reported. PyTorch UNet (STUDIO_OPENVINO=0)
unless CANVAS_BENCH_OPENVINO=1: the app's CPU default converts the UNet to OpenVINO once (~6 min
here) and then runs it ~3-5x cheaper, which makes the fixed model cost smaller and the ratio higher.
Weights are kept between runs where CANVAS_BENCH_MODELS says (as bench/cpu_speed.py).
OpenVINO keeps one compiled UNet shape, so alternating sizes recompiles on every switch (seconds,
from its disk cache); CANVAS_BENCH_WARM_EACH=1 runs each size once untimed before each timed run.

    python -m bench.outpaint_band --child MODELS_FOLDER RESULTS_STORE [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread, Timing, queue_to_png_bytes, side_by_side, timed
from bench.photos import photo, upscaled, variant
from bench.profiling import where_time_goes
from bench.workspace import Workspace, child_report, set_torch_threads

NAME = "outpaint_band"
TARGET = 1.5
BIG, SMALL = 4000, 1000
BAND = 512
STEPS = 8
MODELS = ("tiny-sd-inpaint", "opencv-telea")
REAL_MODEL, REAL_STEPS, REAL_GUIDANCE = "sd15-inpainting", 2, 7.5
MODELS_ENV = "CANVAS_BENCH_MODELS"
OPENVINO_ENV = "CANVAS_BENCH_OPENVINO"
WARM_EACH_ENV = "CANVAS_BENCH_WARM_EACH"
OUTPAINT_PARTS = {
    "whole run (run + PNG bytes)": ("bench/outpaint_band.py", ("user_path",)),
    "fill the band (core.outpaint.fill)": ("core/outpaint.py", ("fill",)),
    "model (engine.inpaint on the tiles)": ("core/engines/", ("inpaint",)),
    "pre-fill (generative models)": ("core/outpaint.py", ("_prefilled",)),
    "scale back + blend": ("core/outpaint.py", ("_blend_into",)),
    "store put (write the band PNG)": ("core/store.py", ("put",)),
    "encode PNGs (band + whole frame)": ("core/provenance.py", ("encode_png",)),
}


def user_path(studio, prepared) -> bytes:
    result = studio.run(prepared)
    if result.cached:
        raise RuntimeError("a profiled run was a cache hit")
    return result.pngs[0]


def run(workspace: Workspace) -> Outcome:
    from core.requests import OutpaintRequest

    set_torch_threads(workspace.options.threads)
    # The tiny UNet on torch, as the tests run it (OpenVINO's converted tiny UNet is another path).
    os.environ["STUDIO_OPENVINO"] = "0"
    source = photo("coffee")
    images = {side: upscaled(source, side).crop((0, 0, side, side * 3 // 4)) for side in (BIG, SMALL)}
    studio, queue = workspace.stored_studio("outpaint-store")
    repeats = workspace.repeats(5)
    figures = []
    for model in MODELS:

        def request(side: int, seed: int, model: str = model) -> OutpaintRequest:
            photo_variant = variant(images[side], seed)  # a miss for every engine: OpenCV ignores the seed
            return OutpaintRequest(
                model=model, image=photo_variant, right=BAND, prompt="more of the table", num_inference_steps=STEPS, seed=seed
            )

        def user_wait(side: int, seed: int) -> Timing:
            job_request = request(side, seed)
            return timed(lambda: queue_to_png_bytes(queue, job_request))

        def run_only(side: int, seed: int) -> Timing:
            prepared = studio.prepare(request(side, seed))
            outcome = {}
            timing = timed(lambda: outcome.setdefault("result", studio.run(prepared)))
            if outcome["result"].cached:
                raise RuntimeError("a timed run was a cache hit")
            return timing

        user_wait(SMALL, 1)  # load the model, warm both sizes
        user_wait(BIG, 1)
        user = side_by_side(lambda r: user_wait(BIG, 100 + r), lambda r: user_wait(SMALL, 100 + r), repeats)
        work = side_by_side(lambda r: run_only(BIG, 200 + r), lambda r: run_only(SMALL, 200 + r), repeats)
        profile = {
            f"{side}px": where_time_goes(
                lambda side=side: user_path(studio, studio.prepare(request(side, 999))), OUTPAINT_PARTS
            )
            for side in (BIG, SMALL)
        }
        name = f"extend {BIG}x{BIG * 3 // 4} by {BAND} px ÷ {SMALL}x{SMALL * 3 // 4} by {BAND} px"
        figures += [
            Figure(
                figure=name,
                case=f"{model}, right side, queue -> PNG bytes of the whole frame, miss",
                value=Spread.of(user.ratios),
                unit="x",
                target=Target.at_most(TARGET),
                details={**user.details(f"{BIG}px", f"{SMALL}px"), "where_the_time_goes_ms": profile},
            ),
            Figure(
                figure=name,
                case=f"{model}, right side, Studio.run with the band stored (no whole-frame PNG), miss",
                value=Spread.of(work.ratios),
                unit="x",
                target=Target.at_most(TARGET),
                details=work.details(f"{BIG}px", f"{SMALL}px"),
            ),
        ]
    queue.shutdown(wait=True)
    notes = {
        "what": __doc__.strip().splitlines()[0],
        "where_the_time_goes_ms": "cProfile cumulative ms of one run per size (Studio.run + PNG bytes); parts nest",
    }
    return Outcome(figures, notes)


# ---------------------------------------------------------------------------------------------
# Real-size case (`--only outpaint_band_real`)


def run_real(workspace: Workspace) -> Outcome:
    from bench.architectures import build

    kept = os.environ.get(MODELS_ENV)
    models = build(Path(kept) if kept else workspace.scratch("real-size"), (REAL_MODEL,))["taesd"].parent
    openvino = os.environ.get(OPENVINO_ENV, "0") == "1"
    environment = workspace.environment(
        STUDIO_OPENVINO="1" if openvino else "0", STUDIO_CACHE_DIR=str(models / "studio-cache")
    )
    repeats = workspace.repeats(3, quick=1)
    store = workspace.scratch("outpaint-real-store")
    warm_each = os.environ.get(WARM_EACH_ENV, "0") == "1"
    arguments = ["--child", str(models), str(store), "--repeats", str(repeats), *(["--warm-each"] if warm_each else [])]
    report = child_report("bench.outpaint_band", arguments, environment, 3600)
    big, small = report["sizes"][f"{BIG}px"], report["sizes"][f"{SMALL}px"]
    ratios = [b / s for b, s in zip(big["wall_s"], small["wall_s"], strict=True)]
    cpu_ratios = [b / s for b, s in zip(big["cpu_s"], small["cpu_s"], strict=True)]
    details = {
        "cpu_time_ratio": Spread.of(cpu_ratios).as_json(),
        **{
            size: {key: Spread.of(values).as_json() for key, values in timings.items()}
            for size, timings in report["sizes"].items()
        },
        "peak_rss_mib": report["peak_rss_mib"],
        "load_average": report["load_average"],
        "configuration": report["configuration"],
        "load_wall_s": report["load_wall_s"],
    }
    name = f"extend {BIG}x{BIG * 3 // 4} by {BAND} px ÷ {SMALL}x{SMALL * 3 // 4} by {BAND} px"
    backend = "OpenVINO UNet" if openvino else "PyTorch UNet"
    figure = Figure(
        figure=name,
        case=(
            f"real-size SD 1.5 Inpainting architecture (random weights), {backend}, {REAL_STEPS} steps, guidance "
            f"{REAL_GUIDANCE:g}, right side, queue -> PNG bytes of the whole frame, miss"
            + (", each after an untimed run of the same size (same UNet shape)" if warm_each else "")
        ),
        value=Spread.of(ratios),
        unit="x",
        target=Target.at_most(TARGET),
        details=details,
    )
    notes = {"what": "the user's path with a real-size inpainting architecture", "child": report}
    return Outcome([figure], notes)


def _child(models: Path, store_folder: Path, repeats: int, warm_each: bool = False) -> dict:
    from core import services
    from core.catalogue import Catalogue
    from core.jobs import JobQueue
    from core.pool import ModelPool
    from core.requests import OutpaintRequest
    from core.runner import Studio
    from core.store import ResultStore

    load_average = {"start": os.getloadavg()}
    entry = store_folder / "models.toml"
    entry.write_text(
        f"[models.{REAL_MODEL}]\n"
        'name = "SD 1.5 Inpainting architecture (random weights)"\n'
        'tasks = ["inpaint"]\nengine = "diffusers"\n'
        f"path = {json.dumps(str(models / REAL_MODEL))}\n"
        f"tiny_vae = {json.dumps(str(models / 'taesd'))}\n"
        f"working_resolution = 512\nsize_multiple = 8\ndefault_steps = {REAL_STEPS}\n"
        f"default_guidance = {REAL_GUIDANCE}\n",
        encoding="utf-8",
    )
    studio = Studio(Catalogue.load(entry), ModelPool(1), ResultStore(store_folder / "store", 64 << 30))
    started = time.perf_counter()
    engine = studio.pool.get(studio.catalogue.get(REAL_MODEL))
    load_wall = time.perf_counter() - started
    from bench.cpu_speed import Clock, _time_parts

    clock = Clock()  # wall/CPU inside the text encoder, UNet, VAE encode and decode, per run
    _time_parts(clock, engine._inpaint, [vae for vae in engine._vaes.values() if vae is not None])
    queue = JobQueue(studio, max_queue=4, max_per_session=4)
    source = photo("coffee")
    images = {side: upscaled(source, side).crop((0, 0, side, side * 3 // 4)) for side in (BIG, SMALL)}
    sizes = {f"{side}px": {"wall_s": [], "cpu_s": [], "run_wall_s": [], "png_wall_s": [], "png_cpu_s": []} for side in images}
    parts = {f"{side}px": [] for side in images}

    def once(side: int, seed: int, record: bool) -> None:
        request = OutpaintRequest(
            model=REAL_MODEL, image=variant(images[side], seed), right=BAND, prompt="more of the table", seed=seed,
            num_inference_steps=REAL_STEPS, guidance_scale=REAL_GUIDANCE,
        )
        clock.wall.clear()
        clock.cpu.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        job = queue.submit(request, session="bench")
        queue.wait(job, timeout=1800)
        result = queue.result(job)
        if result.cached:
            raise RuntimeError("a timed run was served from the store: it must be a miss")
        run_wall, png_cpu = time.perf_counter(), time.process_time()
        png = result.pngs[0]
        end_wall, end_cpu = time.perf_counter(), time.process_time()
        if not png:
            raise RuntimeError("no PNG bytes")
        if record:
            timings = sizes[f"{side}px"]
            timings["wall_s"].append(end_wall - wall)
            timings["cpu_s"].append(end_cpu - cpu)
            timings["run_wall_s"].append(run_wall - wall)
            timings["png_wall_s"].append(end_wall - run_wall)
            timings["png_cpu_s"].append(end_cpu - png_cpu)
            parts[f"{side}px"].append({"wall_s": dict(clock.wall), "cpu_s": dict(clock.cpu)})

    once(SMALL, 1, record=False)  # warm both sizes (first call of each shape)
    once(BIG, 1, record=False)
    load_average["warm"] = os.getloadavg()
    for repeat in range(repeats):
        order = (BIG, SMALL) if repeat % 2 == 0 else (SMALL, BIG)
        for side in order:
            if warm_each:  # OpenVINO keeps one compiled UNet shape: a size switch recompiles (from its disk cache)
                once(side, 500 + repeat, record=False)
            once(side, 100 + repeat, record=True)
    load_average["end"] = os.getloadavg()
    report = {
        "configuration": engine.configuration,
        "load_wall_s": load_wall,
        "sizes": sizes,
        "parts_per_run": parts,
        "peak_rss_mib": _status_kib("VmHWM") / 1024,
        "load_average": load_average,
    }
    queue.shutdown(wait=True)
    services.reset()
    return report


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.outpaint_band")
    parser.add_argument("--child", nargs=2, metavar=("MODELS", "STORE"), required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warm-each", action="store_true", help="an untimed run of the same size before each timed one")
    arguments = parser.parse_args()
    set_torch_threads(arguments.threads)
    folder, store = arguments.child
    print(json.dumps(_child(Path(folder), Path(store), arguments.repeats, arguments.warm_each)))
