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
"""

from __future__ import annotations

import os

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread, Timing, queue_to_png_bytes, side_by_side, timed
from bench.photos import photo, upscaled, variant
from bench.profiling import where_time_goes
from bench.workspace import Workspace, set_torch_threads

NAME = "outpaint_band"
TARGET = 1.5
BIG, SMALL = 4000, 1000
BAND = 512
STEPS = 8
MODELS = ("tiny-sd-inpaint", "opencv-telea")
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
