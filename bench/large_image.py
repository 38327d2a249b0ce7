"""Inpaint time on a 4096² photo ÷ on a 512² photo, same 128-px mask (target <= 1.5).

The runner crops around the mask, so the model sees the same region for both sizes: what differs
is the work on the full image (hashing it for the cache key, mask preparation, pasting back,
encoding the output PNG, storing it). Two measurements, both on the path a user waits for and both
real misses (every timed run changes one pixel of the photo, which every engine reads, and asserts
the result was not served from the store; a new seed would not do: OpenCV and LaMa ignore seeds):

- in process, image already loaded: submit the `InpaintRequest` to the job queue (as the pages and
  the API do), wait for it and take the result's PNG bytes (what the user downloads), with a result
  store; OpenCV Navier-Stokes and the tiny SD inpainting pipeline at a 512-px working resolution
  (8 steps);
- end to end: `python -m core inpaint photo.jpg mask.png -o out.png` in a fresh process (decode
  the JPEG, run, write) over an empty result store, the same two models.

The photo is scikit-image's astronaut (512²) and the same photo upscaled to 4096² (Lanczos); the
mask is a 128-px disc at the same relative place. One run of each size is profiled (cProfile) to
show where the time goes.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread, Timing, children_cpu, queue_to_png_bytes, side_by_side, timed
from bench.photos import disc_mask, photo, upscaled, variant
from bench.profiling import INPAINT_PARTS, where_time_goes
from bench.workspace import REPOSITORY, Workspace, set_torch_threads

NAME = "large_image"
TARGET = 1.5
BIG, SMALL = 4096, 512
MASK_CENTRE = (0.6, 0.45)
STEPS = 8
MODELS = ("opencv-ns", "tiny-sd-inpaint")


def _request(model: str, image, mask, seed: int):
    from core.requests import InpaintRequest

    return InpaintRequest(model=model, image=image, mask=mask, prompt="a sticker", num_inference_steps=STEPS, seed=seed)


def run(workspace: Workspace) -> Outcome:
    set_torch_threads(workspace.options.threads)
    small = photo("astronaut")
    big = upscaled(small, BIG)
    masks = {SMALL: disc_mask(small.size, MASK_CENTRE), BIG: disc_mask(big.size, MASK_CENTRE)}
    images = {SMALL: small, BIG: big}
    studio, queue = workspace.stored_studio("large-store")
    repeats = workspace.repeats(7)
    figures, profiles = [], {}
    for model in MODELS:

        def timed_run(side: int, number: int, model: str = model) -> Timing:
            request = _request(model, variant(images[side], number), masks[side], number)  # the user's upload
            return timed(lambda: queue_to_png_bytes(queue, request))

        timed_run(SMALL, 1)  # load the model and warm both sizes
        timed_run(BIG, 1)
        timings = side_by_side(lambda r: timed_run(BIG, 100 + r), lambda r: timed_run(SMALL, 100 + r), repeats)
        figures.append(
            Figure(
                figure=f"inpaint {BIG}² / {SMALL}², in process",
                case=f"{model}, 128-px mask, queue -> PNG bytes, miss",
                value=Spread.of(timings.ratios),
                unit="x",
                target=Target.at_most(TARGET),
                details=timings.details(f"{BIG}px", f"{SMALL}px"),
            )
        )

        def profiled(side: int, model: str = model) -> None:
            prepared = studio.prepare(_request(model, variant(images[side], 999), masks[side], 999))
            result = studio.run(prepared)
            assert not result.cached
            result.pngs  # noqa: B018 - the bytes the user receives are part of the run

        profiles[model] = {
            f"{side}px": where_time_goes(lambda side=side: profiled(side), INPAINT_PARTS) for side in (BIG, SMALL)
        }
        figures[-1].details["where_the_time_goes_ms"] = profiles[model]
    queue.shutdown(wait=True)

    figures += _end_to_end(workspace, images, masks)
    notes = {
        "what": __doc__.strip().splitlines()[0],
        "where_the_time_goes_ms": "cProfile cumulative ms of one run per size; parts nest inside the whole run",
    }
    return Outcome(figures, notes)


def _end_to_end(workspace: Workspace, images, masks) -> list[Figure]:
    folder = workspace.scratch("large-cli")
    files = {}
    for side, image in images.items():
        image.save(folder / f"photo-{side}.jpg", quality=92)
        masks[side].save(folder / f"mask-{side}.png")
        files[side] = (folder / f"photo-{side}.jpg", folder / f"mask-{side}.png")
    repeats = workspace.repeats(5, quick=2)
    figures = []
    runs = iter(range(1_000_000))
    for model in MODELS:

        def cli(side: int, seed: int, model: str = model) -> Timing:
            image_file, mask_file = files[side]
            # An empty store each run: a miss, whatever the engine reads.
            cache = workspace.scratch(f"large-cli-cache-{next(runs)}")
            environment = workspace.environment(
                STUDIO_CACHE_DIR=str(cache), STUDIO_MODELS_FILE=str(workspace.catalogue_file)
            )
            command = [sys.executable, "-m", "core", "inpaint", str(image_file), str(mask_file)]
            command += [
                "-o",
                str(folder / f"out-{side}.png"),
                "--model",
                model,
                "--seed",
                str(seed),
                "--steps",
                str(STEPS),
            ]
            cpu_before, started = children_cpu(), time.perf_counter()
            completed = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True)
            wall, cpu = time.perf_counter() - started, children_cpu() - cpu_before
            if completed.returncode != 0:
                raise RuntimeError(f"python -m core inpaint failed: {completed.stderr.strip()[-500:]}")
            if "cache hit" in completed.stderr:
                raise RuntimeError("a timed CLI run was a cache hit: it must be a miss")
            return Timing(wall, cpu)

        timings = side_by_side(lambda r: cli(BIG, 500 + r), lambda r: cli(SMALL, 500 + r), repeats)
        figures.append(
            Figure(
                figure=f"inpaint {BIG}² / {SMALL}², CLI end to end",
                case=f"{model}, JPEG in, PNG out",
                value=Spread.of(timings.ratios),
                unit="x",
                target=Target.report(f"report (in-process target <= {TARGET:g})"),
                details=timings.details(f"{BIG}px", f"{SMALL}px"),
            )
        )
    return figures
