"""Extend a 4000x3000 photo by a 512-px band on the right ÷ the same band on a 1000x750 photo (target <= 1.5).

The model runs on tiles of the new band at its working resolution (core/outpaint.py), so what grows
with the photo is only the work around it: copying the photo into the new frame, the blends, and
storing the new band. `Studio.run(Studio.prepare(OutpaintRequest))` with a result store (a new
seed every repetition, and each timed result is checked not to be a cache hit), image loaded,
for the tiny SD inpainting pipeline at a 512-px working resolution (8 steps: its UNet is ~100x
cheaper than a real one, so this is a worst case for the fixed costs) and OpenCV Telea (a remover:
the pre-fill is the result). The photo is scikit-image's coffee upscaled (Lanczos) to each size.
"""

from __future__ import annotations

import os

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread, Timing, side_by_side, timed
from bench.photos import photo, upscaled
from bench.workspace import Workspace, set_torch_threads

NAME = "outpaint_band"
TARGET = 1.5
BIG, SMALL = 4000, 1000
BAND = 512
STEPS = 8
MODELS = ("tiny-sd-inpaint", "opencv-telea")


def run(workspace: Workspace) -> Outcome:
    from core.pool import ModelPool
    from core.requests import OutpaintRequest
    from core.runner import Studio
    from core.store import ResultStore

    set_torch_threads(workspace.options.threads)
    # The tiny UNet on torch, as the tests run it: OpenVINO's converted UNet needs latent sides its
    # downsampling divides, which the tiny UNet's tiles need not have (real SD tiles are multiples of 64).
    os.environ["STUDIO_OPENVINO"] = "0"
    source = photo("coffee")
    images = {side: upscaled(source, side).crop((0, 0, side, side * 3 // 4)) for side in (BIG, SMALL)}
    studio = Studio(workspace.catalogue(), ModelPool(2), ResultStore(workspace.scratch("outpaint-store"), 64 << 30))
    repeats = workspace.repeats(5)
    figures = []
    for model in MODELS:

        def timed_run(side: int, seed: int, model: str = model) -> Timing:
            request = OutpaintRequest(
                model=model,
                image=images[side],
                right=BAND,
                prompt="more of the table",
                num_inference_steps=STEPS,
                seed=seed,
            )
            prepared = studio.prepare(request)
            outcome = {}
            timing = timed(lambda: outcome.setdefault("result", studio.run(prepared)))
            if outcome["result"].cached:
                raise RuntimeError("a timed run was a cache hit")
            return timing

        def fresh(side: int, repeat: int, model: str = model) -> Timing:
            if model == "opencv-telea":  # it ignores seeds: forget its stored results so the run is a miss
                for entry in studio.store.listing():
                    studio.store.delete(entry.key)
            return timed_run(side, 100 + repeat)

        fresh(SMALL, -50)  # load the model, warm both sizes
        fresh(BIG, -50)

        timings = side_by_side(lambda r: fresh(BIG, r), lambda r: fresh(SMALL, r), repeats)
        figures.append(
            Figure(
                figure=f"extend {BIG}x{BIG * 3 // 4} by {BAND} px ÷ {SMALL}x{SMALL * 3 // 4} by {BAND} px",
                case=f"{model}, right side, image loaded, stored",
                value=Spread.of(timings.ratios),
                unit="x",
                target=Target.at_most(TARGET),
                details=timings.details(f"{BIG}px", f"{SMALL}px"),
            )
        )
    return Outcome(figures, {"what": __doc__.strip().splitlines()[0]})
