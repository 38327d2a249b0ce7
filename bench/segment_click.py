"""Time of a click after the first on a 4000x3000 photo with real-size MobileSAM stand-ins (target <= 0.2 s),
and of the first click (the image embedding + the decoder).

No weights can be downloaded here, so both halves are MobileSAM's architecture at its real size with
random weights (bench/sam_models.py: TinyViT encoder, 5.7 M parameters; SAM's prompt decoder, 4.06 M),
exported to ONNX under the interface of Acly's export that the app loads (core/engines/sam.py).
A click is what the page, the CLI and the API do: `Studio.segment` (the photo's digest known, as the
page passes it; the API and the CLI hash the photo they were sent) and the mask as the PNG the CLI
and the API return; new points each click on the same photo, onnxruntime on this CPU. Wall and CPU
seconds (all threads of this process; steadier than wall time on a shared machine), and where the
time of one click goes (cProfile).
"""

from __future__ import annotations

import time

import numpy as np

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread
from bench.workspace import Workspace

NAME = "segment_click"
TARGET_S = 0.2
SIZE = (4000, 3000)
CLICK_PARTS = {
    "whole click (segment + mask PNG)": ("bench/segment_click.py", ("click",)),
    "decoder (onnxruntime)": ("core/engines/sam.py", ("_decode",)),
    "mask to the photo's size": ("core/engines/sam.py", ("_mask_at",)),
    "mask PNG": ("core/masks/files.py", ("mask_png",)),
    "hash the photo": ("core/keys.py", ("image_digest",)),
}


def run(workspace: Workspace) -> Outcome:
    from bench.photos import photo as scikit_photo
    from bench.photos import upscaled
    from bench.profiling import where_time_goes
    from bench.sam_models import export_mobile_sam
    from core.catalogue import Catalogue
    from core.keys import image_digest
    from core.masks.files import mask_png
    from core.pool import ModelPool
    from core.requests import SegmentRequest
    from core.runner import Studio
    from tests.tiny_sam import write_sam_catalogue

    encoder, _decoder, parameters = export_mobile_sam(workspace.scratch("segment-models"))
    studio = Studio(Catalogue.load(write_sam_catalogue(encoder.parent / "models.toml", encoder)), ModelPool(1), None)
    photo = upscaled(scikit_photo("coffee"), SIZE[0]).crop((0, 0, *SIZE))
    rng = np.random.default_rng(0)
    points = [(float(x), float(y), i % 3 != 2) for i, (x, y) in enumerate(rng.uniform(100, 2900, (12, 2)))]
    studio.segmenter(studio.catalogue.get("tiny-sam"))  # the sessions loaded, as after the page's first run

    def click(count: int, digest: str | None) -> bytes:
        request = SegmentRequest(model="tiny-sam", image=photo, points=tuple(points[:count]))
        return mask_png(studio.segment(request, image_digest_hint=digest))

    cpu_started, started = time.process_time(), time.perf_counter()
    digest = image_digest(photo)  # the page has it from the upload
    click(1, digest)
    first, first_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    walls, cpus, selected = [], [], []
    for count in range(2, len(points) + 1):  # each click adds a point, as on the page
        cpu_started, started = time.process_time(), time.perf_counter()
        png = click(count, digest)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
        selected.append(len(png))
    hashed_walls, hashed_cpus = [], []
    for count in range(2, 7):  # the API's and the CLI's way: the photo hashed on every call
        cpu_started, started = time.process_time(), time.perf_counter()
        click(count, None)
        hashed_walls.append(time.perf_counter() - started)
        hashed_cpus.append(time.process_time() - cpu_started)
    profile = where_time_goes(lambda: click(len(points), None), CLICK_PARTS)
    details = {"parameters": parameters, "mask_png_bytes": selected, "where_a_click_goes_ms": profile}
    return Outcome(
        [
            Figure(
                figure=f"a click after the first, {SIZE[0]}x{SIZE[1]} photo (wall)",
                case="real-size MobileSAM (random weights), Studio.segment + mask PNG, 2-12 points, digest known",
                value=Spread.of(walls),
                unit="s",
                target=Target.at_most(TARGET_S),
                details={**details, "clicks_s": walls},
            ),
            Figure(
                figure=f"a click after the first, {SIZE[0]}x{SIZE[1]} photo (CPU seconds, all threads)",
                case="the same clicks: steadier than wall time on a loaded machine",
                value=Spread.of(cpus),
                unit="s",
                target=Target.at_most(TARGET_S),
                details={"clicks_cpu_s": cpus},
            ),
            Figure(
                figure="a click after the first, photo hashed each time (API, CLI): wall",
                case=f"as above, 2-6 points, no digest given (CPU {np.median(hashed_cpus):.3f} s median)",
                value=Spread.of(hashed_walls),
                unit="s",
                target=Target.report(),
                details={"clicks_cpu_s": hashed_cpus},
            ),
            Figure(
                figure="first click on a photo (TinyViT embedding + decoder + PNG): wall",
                case=f"real-size MobileSAM, CPU {first_cpu:.2f} s (all threads)",
                value=Spread.of([first]),
                unit="s",
                target=Target.report(),
                details={"cpu_s": first_cpu},
            ),
        ],
        {"what": __doc__.strip().splitlines()[0]},
    )
