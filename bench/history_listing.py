"""History listing of 2,000 results (target < 1 s), and a thumbnail made once vs read back.

A store is filled with 2,000 real entries (each a PNG carrying its parameters and the metadata
the runner writes). Timed: `core.history.history(store)` (every entry, newest first: what the
History page reads on each render), in this process and in a fresh process (cold imports and
file cache aside, the child's own timing of the call). Thumbnails: making one from a 512x512
result (decode, resize, WebP) vs reading the one kept in the entry.

Child process entry (used by the benchmark itself):
    python -m bench.history_listing --child-list STORE
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread, Timing, timed
from bench.workspace import Workspace, child_report

NAME = "history_listing"
ENTRIES = 2000
LIMIT_S = 1.0
_STORE_BYTES = 8 << 30


def fill(store, count: int) -> None:
    from PIL import Image

    from core.keys import digest_bytes
    from core.provenance import encode_png

    for index in range(count):
        parameters = {
            "task": "txt2img",
            "model": f"model-{index % 5}",
            "prompt": f"a lighthouse at dusk number {index}, oil painting, dramatic light",
            "negative_prompt": "blurry",
            "num_inference_steps": 25,
            "guidance_scale": 7.5,
            "seed": index,
            "scheduler": "Euler a",
            "width": 512,
            "height": 512,
            "num_images": 1,
            "model_name": "Some model",
            "model_source": "hub:someone/model@main",
            "engine": "diffusers-0.x",
            "filtered": [False],
        }
        png = encode_png(Image.new("RGB", (64, 64), (index % 256, 40, 90)), parameters)
        store.put(
            digest_bytes(f"history bench {index}".encode()), [png], {"parameters": parameters, "filtered": [False]}
        )


def run(workspace: Workspace) -> Outcome:
    from PIL import Image

    from core.history import history, thumbnail
    from core.keys import digest_bytes
    from core.provenance import encode_png
    from core.store import ResultStore

    folder = workspace.scratch("history-store")
    store = ResultStore(folder, _STORE_BYTES)
    fill(store, ENTRIES)
    repeats = workspace.repeats(7)
    listed = []
    in_process = [timed(lambda: listed.append(history(store))) for _ in range(repeats)]
    if len(listed[-1]) != ENTRIES:
        raise RuntimeError(f"listed {len(listed[-1])} of {ENTRIES} entries")
    fresh = [
        child_report("bench.history_listing", ["--child-list", str(folder)], workspace.environment())
        for _ in range(workspace.repeats(3, quick=1))
    ]

    # A thumbnail: made from a 512 px result once, then read back from the entry.
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    makes, reads = [], []
    for index in range(repeats):
        key = digest_bytes(f"thumbnail bench {index}".encode())
        store.put(key, [encode_png(photo, {"task": "txt2img", "seed": index})], {"parameters": {"seed": index}})
        makes.append(timed(lambda key=key: thumbnail(store, key)))
        reads.append(timed(lambda key=key: thumbnail(store, key)))
    figures = [
        Figure(
            figure="history listing, in process",
            case=f"{ENTRIES} stored results",
            value=Spread.of([t.wall for t in in_process]),
            unit="s",
            target=Target.at_most(LIMIT_S),
            details={"cpu_s": Spread.of([t.cpu for t in in_process]).as_json()},
        ),
        Figure(
            figure="history listing, fresh process",
            case=f"{ENTRIES} stored results",
            value=Spread.of([report["list_s"] for report in fresh]),
            unit="s",
            target=Target.at_most(LIMIT_S),
            details={"process_wall_s": Spread.of([report["process_wall_s"] for report in fresh]).as_json()},
        ),
        Figure(
            figure="thumbnail read back / made",
            case="512x512 result, 256 px WebP kept in the entry",
            value=Spread.of([read.wall / make.wall for make, read in zip(makes, reads, strict=True)]),
            unit="x",
            target=Target.report("made once, then read"),
            details={
                "make_ms_median": 1000 * statistics.median(t.wall for t in makes),
                "read_ms_median": 1000 * statistics.median(t.wall for t in reads),
            },
        ),
    ]
    return Outcome(figures, {"what": __doc__.strip().splitlines()[0]})


def _child_list(folder: str) -> dict:
    from core.history import history
    from core.store import ResultStore

    store = ResultStore(Path(folder), _STORE_BYTES)
    listed = []
    timing: Timing = timed(lambda: listed.append(history(store)))
    return {"list_s": timing.wall, "list_cpu_s": timing.cpu, "entries": len(listed[0])}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.history_listing")
    parser.add_argument("--child-list", metavar="STORE", required=True)
    print(json.dumps(_child_list(parser.parse_args().child_list)))
