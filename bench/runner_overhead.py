"""Core runner end to end ÷ the bare diffusers pipeline call (target <= 1.05).

Both sides use the very same loaded pipeline object, prompt, size, steps, guidance and seed, and
produce the same pixels (checked). The runner side is `Studio.run(Studio.prepare(request))`:
validation and the cache key, the store lookup (a miss: every repetition has a new seed), the
pipeline call, PNG encoding with the parameters, and the store write. The bare side is what a
diffusers user writes: `pipe(prompt, ..., generator=torch.Generator().manual_seed(seed))`.

The cost of each runner-only part is also timed on its own (medians), to show what the
difference is made of.
"""

from __future__ import annotations

import secrets
import statistics

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread, side_by_side, timed
from bench.workspace import Workspace, set_torch_threads

NAME = "runner_overhead"
TARGET = 1.05
SIZE = 512
STEPS = 8
GUIDANCE = 7.5
PROMPT = "a lighthouse on a cliff at dusk, oil painting"


def run(workspace: Workspace) -> Outcome:
    import numpy as np
    import torch

    from core.pool import ModelPool
    from core.provenance import encode_png
    from core.requests import GenerateRequest
    from core.runner import Studio
    from core.store import ResultStore

    set_torch_threads(workspace.options.threads)
    store = ResultStore(workspace.scratch("runner-store"), max_bytes=8 << 30)
    studio = Studio(workspace.catalogue(), ModelPool(1), store)

    def request(seed: int) -> GenerateRequest:
        return GenerateRequest(
            model="tiny-sd",
            prompt=PROMPT,
            width=SIZE,
            height=SIZE,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            seed=seed,
        )

    # The pipeline the runner's engine holds (a private attribute: the only way to call exactly the
    # object the runner calls, so both sides share weights, memory layout and warm caches).
    engine = studio.pool.get(studio.catalogue.get("tiny-sd"))
    pipe = engine._txt2img

    def bare(seed: int):
        generator = torch.Generator(device="cpu").manual_seed(seed)
        return pipe(
            prompt=PROMPT,
            width=SIZE,
            height=SIZE,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            generator=generator,
            output_type="pil",
        ).images[0]

    def through_runner(seed: int):
        result = studio.run(studio.prepare(request(seed)))
        if result.cached:
            raise RuntimeError("the runner answered from its store; the benchmark needs misses")
        return result

    # Warm both paths, and check they compute the same thing.
    runner_image = through_runner(0).images[0]
    bare_image = bare(0)
    same_pixels = bool(np.array_equal(np.asarray(runner_image), np.asarray(bare_image.convert("RGB"))))

    repeats = workspace.repeats(9)
    timings = side_by_side(
        lambda repeat: timed(lambda: through_runner(1000 + repeat)),
        lambda repeat: timed(lambda: bare(1000 + repeat)),
        repeats,
    )

    # What the runner adds, part by part (each timed on its own, median of several).
    parts_ms = _runner_parts_ms(studio, store, request, runner_image, encode_png)
    overhead_ms = 1000 * (statistics.median(t.wall for t in timings.a) - statistics.median(t.wall for t in timings.b))
    figure = Figure(
        figure="runner / bare pipeline",
        case=f"tiny-sd txt2img {SIZE} px, {STEPS} steps, CFG {GUIDANCE:g}",
        value=Spread.of(timings.ratios),
        unit="x",
        target=Target.at_most(TARGET),
        details={
            **timings.details("runner", "bare"),
            "overhead_ms_from_medians": overhead_ms,
            "same_pixels": same_pixels,
            "runner_parts_ms": parts_ms,
        },
    )
    notes = {
        "what": __doc__.strip().splitlines()[0],
        "same_pixels_means": "the runner's PNG decodes to exactly the bare call's image for the same seed",
        "parts": "median ms of each runner-only step, timed alone on the same output; their sum is what the runner should add",
    }
    return Outcome([figure], notes)


def _runner_parts_ms(studio, store, request, image, encode_png, repeats: int = 9) -> dict[str, float]:
    prepared = studio.prepare(request(77))
    pngs = (encode_png(image, prepared.parameters),)
    parts = {
        "prepare (validate, defaults, key)": lambda: studio.prepare(request(77)),
        "store lookup (miss)": lambda: studio.cached(prepared),
        "encode PNG with parameters": lambda: encode_png(image, prepared.parameters),
        # A fresh key each time: a put of an existing key returns early.
        "store put (write, fsync, publish)": lambda: store.put(secrets.token_hex(32), pngs, {"parameters": prepared.parameters}),
    }
    return {name: 1000 * statistics.median(timed(part).wall for _ in range(repeats)) for name, part in parts.items()}
