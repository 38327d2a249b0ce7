"""What the job queue costs: per job, and per diffusion step while a page watches the live preview.

Run from the repository root (it first builds the tiny offline pipelines of the test suite in a
temporary folder, which takes about ten seconds; the whole run takes one to two minutes):

    python bench/queue_overhead.py                   # 9 repetitions, torch on 1 thread
    python bench/queue_overhead.py --repeats 15 --threads 0

Every figure is a ratio of two timings taken side by side in the same run, alternating which goes
first, because this machine is shared and noisy; the table shows the median and the spread
(min-max) over the repetitions. Torch runs on one thread by default: with other work on a 2-core
machine, torch's own thread pool makes step times swing by 3x, which hides everything measured
here (the queue adds the same work either way). Results are printed and written to
bench/results/queue_overhead.json, with the machine's load average before and after.

(a) queue overhead per job = (submit + wait + result through JobQueue) / (prepare + run called
    directly on the Studio), with the result store disabled so both really run. Target: the
    queued time is at most 1.02 x the direct time + 5 ms. Cases: the tiny SD pipelines (txt2img,
    and inpainting a scikit-image photo at a 512-px working size) and OpenCV on the same photo
    and on a small crop, where only the queue's fixed cost is left.
(b) live-preview cost per diffusion step = seconds per step while a watcher thread renders the
    preview at every step (a page polls every few hundred ms; this one every 2 ms) / seconds per
    step with nobody looking, both as the queue measures them (first to last step). Target: at
    most 1.05.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/...` from the repo root

from PIL import Image, ImageDraw  # noqa: E402

from core.catalogue import Catalogue  # noqa: E402
from core.jobs import JobQueue, JobState  # noqa: E402
from core.pool import ModelPool  # noqa: E402
from core.requests import GenerateRequest, InpaintRequest  # noqa: E402
from core.runner import Studio  # noqa: E402
from tests.tiny_pipelines import build_tiny_pipelines, write_catalogue  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "queue_overhead.json"
OVERHEAD_RATIO_TARGET = 1.02
OVERHEAD_SLACK_S = 0.005  # "+ a few ms": the fixed cost of a thread hand-off matters only for instant jobs
PREVIEW_RATIO_TARGET = 1.05


@dataclass(frozen=True)
class Case:
    name: str
    make_request: Callable[[int], GenerateRequest | InpaintRequest]  # seed -> request
    diffusion: bool  # has steps and live previews


def photo_and_mask() -> tuple[Image.Image, Image.Image]:
    from skimage import data

    photo = Image.fromarray(data.coffee())  # 600x400 RGB photo
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse((250, 150, 378, 278), fill=255)  # a 128-px object to remove
    return photo, mask


def cases(photo: Image.Image, mask: Image.Image) -> list[Case]:
    def generate(size: int, steps: int):
        return lambda seed: GenerateRequest(
            model="tiny-sd", prompt="a lighthouse at dusk", width=size, height=size, num_inference_steps=steps, seed=seed
        )

    def inpaint(model: str, steps: int, image: Image.Image = photo, mask: Image.Image = mask):
        return lambda seed: InpaintRequest(
            model=model, image=image, mask=mask, prompt="a cup of tea", num_inference_steps=steps, seed=seed
        )

    # A job of a few milliseconds, where the queue's fixed cost (two thread hand-offs) shows.
    small_photo = photo.crop((230, 130, 390, 290))
    small_mask = Image.new("L", small_photo.size, 0)
    ImageDraw.Draw(small_mask).ellipse((68, 68, 92, 92), fill=255)
    small = inpaint("opencv-telea", 1, small_photo, small_mask)

    return [
        Case("tiny-sd txt2img 512px, 8 steps", generate(512, 8), diffusion=True),
        Case("tiny-sd-inpaint, photo, 8 steps", inpaint("tiny-sd-inpaint", 8), diffusion=True),
        Case("opencv-telea, photo", inpaint("opencv-telea", 1), diffusion=False),
        Case("opencv-telea, 160 px crop, 24 px mask", small, diffusion=False),
    ]


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


# (a) ---------------------------------------------------------------------------------------------


def time_direct(studio: Studio, request) -> float:
    started = time.perf_counter()
    studio.run(studio.prepare(request))
    return time.perf_counter() - started


def time_queued(queue: JobQueue, request) -> float:
    started = time.perf_counter()
    job = queue.submit(request, session="bench")
    status = queue.wait(job)
    queue.result(job)
    elapsed = time.perf_counter() - started
    if status.state is not JobState.DONE:
        raise RuntimeError(f"the benchmark job ended {status.state}: {status.error}")
    return elapsed


def measure_overhead(studio: Studio, queue: JobQueue, case: Case, repeats: int) -> dict:
    time_direct(studio, case.make_request(0))  # load the model and warm both paths
    time_queued(queue, case.make_request(0))
    ratios, direct_times, queued_times = [], [], []
    for repeat in range(repeats):
        request = case.make_request(1000 + repeat)
        if repeat % 2:
            queued = time_queued(queue, request)
            direct = time_direct(studio, request)
        else:
            direct = time_direct(studio, request)
            queued = time_queued(queue, request)
        direct_times.append(direct)
        queued_times.append(queued)
        ratios.append(queued / direct)
    direct_median, queued_median = statistics.median(direct_times), statistics.median(queued_times)
    return {
        "case": case.name,
        "ratio": summary(ratios),
        "direct_s": summary(direct_times),
        "queued_s": summary(queued_times),
        "overhead_ms_median": 1000 * (queued_median - direct_median),
        "target": f"queued <= {OVERHEAD_RATIO_TARGET} x direct + {OVERHEAD_SLACK_S * 1000:.0f} ms",
        "met": queued_median <= OVERHEAD_RATIO_TARGET * direct_median + OVERHEAD_SLACK_S,
    }


# (b) ---------------------------------------------------------------------------------------------


def time_per_step(queue: JobQueue, request, *, watch: bool) -> tuple[float, list[float]]:
    """Seconds per step of one queued run (as the queue measured it, first to last report, so model
    load and VAE decode are left out), and the time of each preview the watcher rendered."""
    job = queue.submit(request, session="bench")
    renders: list[float] = []
    if watch:  # poll every 2 ms (a page polls every few hundred ms) and look at every new step
        seen_step = 0
        while not (status := queue.status(job)).state.finished:
            if status.step > seen_step:
                started = time.perf_counter()
                if queue.preview(job) is not None:
                    renders.append(time.perf_counter() - started)
                    seen_step = status.step
            time.sleep(0.002)
    status = queue.wait(job)
    if status.state is not JobState.DONE:
        raise RuntimeError(f"the benchmark job ended {status.state}: {status.error}")
    return status.step_s, renders


def measure_preview_cost(queue: JobQueue, case: Case, repeats: int) -> dict:
    time_per_step(queue, case.make_request(0), watch=True)  # warm
    ratios, watched_times, plain_times, renders, render_times = [], [], [], [], []
    for repeat in range(repeats):
        request = case.make_request(2000 + repeat)
        if repeat % 2:
            watched, rendered = time_per_step(queue, request, watch=True)
            plain, _ = time_per_step(queue, request, watch=False)
        else:
            plain, _ = time_per_step(queue, request, watch=False)
            watched, rendered = time_per_step(queue, request, watch=True)
        watched_times.append(watched)
        plain_times.append(plain)
        renders.append(len(rendered))
        render_times += rendered
        ratios.append(watched / plain)
    return {
        "case": case.name,
        "ratio": summary(ratios),
        "step_s_with_preview": summary(watched_times),
        "step_s_without": summary(plain_times),
        "previews_rendered_per_run": renders,
        "render_ms_median": 1000 * statistics.median(render_times) if render_times else None,
        "target": f"<= {PREVIEW_RATIO_TARGET}",
        "met": statistics.median(ratios) <= PREVIEW_RATIO_TARGET,
    }


# -------------------------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, str, dict, str]]) -> None:
    header = ("figure", "case", "median", "spread (min-max)", "target", "met")
    lines = [header]
    for figure, case, result, target in rows:
        ratio = result["ratio"]
        lines.append(
            (
                figure,
                case,
                f"{ratio['median']:.3f}",
                f"{ratio['min']:.3f}-{ratio['max']:.3f}",
                target,
                "yes" if result["met"] else "NO",
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for index, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="repetitions per figure (default 9)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared machine; 0 = torch's choice)"
    )
    arguments = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="queue-bench-") as folder:
        print("building the tiny offline pipelines…", flush=True)
        # Working at 512 px like real SD inpainting, so previews are drawn from real-sized latents (64x64).
        catalogue_file = write_catalogue(Path(folder) / "models.toml", build_tiny_pipelines(Path(folder)), working_resolution=512)
        catalogue = Catalogue.load(catalogue_file)
        # One pool for both paths, so both use the same warm model; no store, so nothing is a cache hit.
        studio = Studio(catalogue, ModelPool(2), store=None)
        queue = JobQueue(studio)
        photo, mask = photo_and_mask()
        all_cases = cases(photo, mask)
        try:
            overhead = [measure_overhead(studio, queue, case, arguments.repeats) for case in all_cases]
            preview = [measure_preview_cost(queue, case, arguments.repeats) for case in all_cases if case.diffusion]
        finally:
            queue.shutdown()

    rows = [("queue overhead per job", r["case"], r, f"<= {OVERHEAD_RATIO_TARGET} (+5 ms)") for r in overhead]
    rows += [("live-preview cost per step", r["case"], r, f"<= {PREVIEW_RATIO_TARGET}") for r in preview]
    print()
    print_table(rows)
    for result in overhead:
        print(
            f"  {result['case']}: direct {1000 * result['direct_s']['median']:.1f} ms, "
            f"queued {1000 * result['queued_s']['median']:.1f} ms, overhead {result['overhead_ms_median']:+.2f} ms"
        )
    for result in preview:
        print(
            f"  {result['case']}: {1000 * result['step_s_without']['median']:.1f} ms/step without previews, "
            f"{1000 * result['step_s_with_preview']['median']:.1f} ms/step with one render per step "
            f"({result['render_ms_median']:.2f} ms per render, in the watcher's thread)"
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "queue_overhead",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "repeats": arguments.repeats,
        "torch_threads": torch.get_num_threads(),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],  # other work on this machine
        "queue_overhead_per_job": overhead,
        "live_preview_cost_per_step": preview,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
