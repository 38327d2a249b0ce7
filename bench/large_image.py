"""Inpaint time on a 4096² photo ÷ on a 512² photo, same 128-px mask (target <= 1.5).

The runner crops around the mask, so the model sees the same region for both sizes: what differs
is the work on the full image (hashing it for the cache key, mask preparation, pasting back,
encoding the output PNG, storing it). Two measurements:

- in process, image already loaded: `Studio.run(Studio.prepare(InpaintRequest))` with a result
  store (new seed every time, so always a miss), OpenCV Navier-Stokes and the tiny SD inpainting
  pipeline at a 512-px working resolution (8 steps);
- end to end: `python -m core inpaint photo.jpg mask.png -o out.png` in a fresh process (decode
  the JPEG, run, write), the same two models.

The photo is scikit-image's astronaut (512²) and the same photo upscaled to 4096² (Lanczos); the
mask is a 128-px disc at the same relative place. One run of each size is profiled (cProfile) to
show where the time goes.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread, Timing, children_cpu, side_by_side, timed
from bench.photos import disc_mask, photo, upscaled
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
    from core.pool import ModelPool
    from core.runner import Studio
    from core.store import ResultStore

    set_torch_threads(workspace.options.threads)
    small = photo("astronaut")
    big = upscaled(small, BIG)
    masks = {SMALL: disc_mask(small.size, MASK_CENTRE), BIG: disc_mask(big.size, MASK_CENTRE)}
    images = {SMALL: small, BIG: big}
    studio = Studio(workspace.catalogue(), ModelPool(2), ResultStore(workspace.scratch("large-store"), 64 << 30))
    repeats = workspace.repeats(7)
    figures, profiles = [], {}
    for model in MODELS:

        def timed_run(side: int, seed: int, model: str = model) -> Timing:
            request = _request(model, images[side], masks[side], seed)
            return timed(lambda: studio.run(studio.prepare(request)))

        timed_run(SMALL, 0)  # load the model and warm both sizes
        timed_run(BIG, 0)
        timings = side_by_side(lambda r: timed_run(BIG, 100 + r), lambda r: timed_run(SMALL, 100 + r), repeats)
        figures.append(
            Figure(
                figure=f"inpaint {BIG}² / {SMALL}², in process",
                case=f"{model}, 128-px mask, image loaded",
                value=Spread.of(timings.ratios),
                unit="x",
                target=Target.at_most(TARGET),
                details=timings.details(f"{BIG}px", f"{SMALL}px"),
            )
        )
        profiles[model] = {
            f"{side}px": where_time_goes(
                lambda side=side, model=model: studio.run(studio.prepare(_request(model, images[side], masks[side], 999))),
                INPAINT_PARTS,
            )
            for side in (BIG, SMALL)
        }
        figures[-1].details["where_the_time_goes_ms"] = profiles[model]

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
    environment = workspace.environment(
        STUDIO_CACHE_DIR=str(workspace.scratch("large-cli-cache")), STUDIO_MODELS_FILE=str(workspace.catalogue_file)
    )
    repeats = workspace.repeats(5, quick=2)
    figures = []
    for model in MODELS:

        def cli(side: int, seed: int, model: str = model) -> Timing:
            image_file, mask_file = files[side]
            command = [sys.executable, "-m", "core", "inpaint", str(image_file), str(mask_file)]
            command += ["-o", str(folder / f"out-{side}.png"), "--model", model, "--seed", str(seed), "--steps", str(STEPS)]
            cpu_before, started = children_cpu(), time.perf_counter()
            completed = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True)
            wall, cpu = time.perf_counter() - started, children_cpu() - cpu_before
            if completed.returncode != 0:
                raise RuntimeError(f"python -m core inpaint failed: {completed.stderr.strip()[-500:]}")
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
