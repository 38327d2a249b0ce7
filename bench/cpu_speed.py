"""No GPU: Canvas Studio's CPU default ÷ bare diffusers (PyTorch, full VAE), real-size architectures.

Two cases, random weights from the real configs (bench/architectures.py; nothing from the Hub):
- SD-Turbo (SD 2.1 architecture), text to image, 512 px, 1 step, guidance 0 (goal <= 0.4);
- SD 1.5 Inpainting, 4 steps, guidance 7.5, a 512-px crop around a mask on a photo (goal <= 0.5).

Each configuration runs in a fresh process, one at a time, alternating which goes first:
- bare: `StableDiffusionPipeline` / `StableDiffusionInpaintPipeline` from the folder, float32, run
  as its documentation shows, output PIL;
- studio: the request through Canvas Studio's job queue as a page sends it, with the CPU defaults
  (fast decoder, and OpenVINO where `core/engines/openvino.py` keeps it), until the PNG bytes exist;
  the run is asserted not to be a cache hit.

Figures: CPU seconds of the run (steadier than wall time on a shared machine; model loading
apart), its split (text encoder, UNet, VAE encode, decode), loading, peak RSS (VmHWM) and wall
times. Heavy: ~10 GB of weights on disk and ~7 GB RAM per process; run it alone
(`flock /work/coord/heavy.lock python -m bench --only cpu_speed`).

    python -m bench.cpu_speed --child bare|studio MODELS_FOLDER txt2img|inpaint [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread
from bench.workspace import Workspace, child_report

NAME = "cpu_speed"
MODELS_ENV = "CANVAS_BENCH_MODELS"
CASES = {  # task -> (model folder, steps, guidance, goal)
    "txt2img": ("sd-turbo", 1, 0.0, 0.4),
    "inpaint": ("sd15-inpainting", 4, 7.5, 0.5),
}
PROMPT = "a red fox in the snow, watercolour"
SIZE = 512


def run(workspace: Workspace) -> Outcome:
    from bench.architectures import build

    # ~9 GB of weights and the OpenVINO conversions: kept between runs where CANVAS_BENCH_MODELS says.
    kept = os.environ.get(MODELS_ENV)
    models = build(Path(kept) if kept else workspace.scratch("real-size"))["taesd"].parent
    # The app keeps its OpenVINO conversion on disk (once per model, like a download): convert
    # first, untimed, so the timed fresh processes measure what every later start costs.
    environment = workspace.environment(STUDIO_CACHE_DIR=str(models / "studio-cache"))
    repeats = workspace.repeats(2, quick=1)
    threads = ["--threads", "2"]  # both cores, one process at a time
    figures = []
    first_runs = {}
    for task, (model, steps, guidance, goal) in CASES.items():
        first_runs[task] = child_report("bench.cpu_speed", ["--child", "studio", str(models), task, *threads], environment, 3600)
        reports: dict[str, list[dict]] = {"bare": [], "studio": []}
        for repeat in range(repeats):
            order = ["bare", "studio"] if repeat % 2 == 0 else ["studio", "bare"]
            for kind in order:
                report = child_report("bench.cpu_speed", ["--child", kind, str(models), task, *threads], environment, 1800)
                reports[kind].append(report)
        ratios = [s["run_cpu_s"] / b["run_cpu_s"] for s, b in zip(reports["studio"], reports["bare"], strict=True)]
        figures.append(
            Figure(
                figure="CPU default / bare diffusers (CPU seconds of the run)",
                case=f"{model} architecture, {task}, {SIZE} px, {steps} step{'s' * (steps > 1)}, guidance {guidance:g}",
                value=Spread.of(ratios),
                unit="x",
                target=Target.at_most(goal),
                details={kind: _summary(runs) for kind, runs in reports.items()},
            )
        )
    notes = {
        "what": __doc__.strip().splitlines()[0],
        "studio_configuration": reports["studio"][-1]["configuration"],
        "first_run_with_openvino_conversion": first_runs,
    }
    return Outcome(figures, notes)


def _summary(runs: list[dict]) -> dict:
    keys = [key for key, value in runs[0].items() if isinstance(value, (int, float)) and not isinstance(value, bool)]
    summary = {key: Spread.of([run[key] for run in runs]).as_json() for key in keys}
    summary["parts_cpu_s"] = {
        part: Spread.of([run["parts_cpu_s"].get(part, 0.0) for run in runs]).as_json() for part in runs[0]["parts_cpu_s"]
    }
    summary["parts_wall_s"] = {
        part: Spread.of([run["parts_wall_s"].get(part, 0.0) for run in runs]).as_json() for part in runs[0]["parts_wall_s"]
    }
    return summary


# ---------------------------------------------------------------------------------------------
# Child processes


class Clock:
    """Wall and process-CPU seconds spent inside each named part (hooks around module calls)."""

    def __init__(self):
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, owner, method: str = "forward") -> None:
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.wall[name] += time.perf_counter() - wall
                self.cpu[name] += time.process_time() - cpu

        setattr(owner, method, timed)


def _photo_and_mask():
    from PIL import Image, ImageDraw
    from skimage import data

    photo = Image.fromarray(data.astronaut())  # 512x512
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse((190, 150, 330, 260), fill=255)
    return photo, mask


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _time_parts(clock: Clock, pipe, vaes) -> None:
    clock.wrap("text encoder", pipe.text_encoder)
    clock.wrap("unet", pipe.unet)
    for vae in vaes:
        clock.wrap("decode", vae, "decode")
        clock.wrap("vae encode", vae, "encode")


def _bare(models: Path, task: str) -> dict:
    import diffusers
    import torch

    model, steps, guidance, _ = CASES[task]
    clock = Clock()
    wall, cpu = time.perf_counter(), time.process_time()
    pipeline_class = diffusers.StableDiffusionPipeline if task == "txt2img" else diffusers.StableDiffusionInpaintPipeline
    pipe = pipeline_class.from_pretrained(str(models / model), torch_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    load_wall, load_cpu = time.perf_counter() - wall, time.process_time() - cpu
    _time_parts(clock, pipe, [pipe.vae])
    arguments = {"prompt": PROMPT, "num_inference_steps": steps, "guidance_scale": guidance}
    if task == "txt2img":
        arguments.update(width=SIZE, height=SIZE)
    else:
        photo, mask = _photo_and_mask()
        arguments.update(image=photo, mask_image=mask, width=SIZE, height=SIZE)
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        image = pipe(**arguments, generator=torch.Generator("cpu").manual_seed(1)).images[0]
    image.tobytes()
    return _report(clock, "bare diffusers, float32, full VAE", load_wall, load_cpu, wall, cpu)


def _studio(models: Path, task: str) -> dict:
    from core import services
    from core.catalogue import Catalogue
    from core.jobs import JobQueue
    from core.pool import ModelPool
    from core.requests import GenerateRequest, InpaintRequest
    from core.runner import Studio

    model, steps, guidance, _ = CASES[task]
    entry = models / "models.toml"
    entry.write_text(
        f'[models.{model}]\ntasks = ["{task}"]\nengine = "diffusers"\npath = "{models / model}"\n'
        f'tiny_vae = "{models / "taesd"}"\nworking_resolution = {SIZE}\ndefault_steps = {steps}\n'
        f"default_guidance = {guidance}\n",
        encoding="utf-8",
    )
    studio = Studio(Catalogue.load(entry), ModelPool(1), store=None)
    spec = studio.catalogue.get(model)
    clock = Clock()
    wall, cpu = time.perf_counter(), time.process_time()
    engine = studio.pool.get(spec)  # what the first run of a fresh app pays before its steps
    load_wall, load_cpu = time.perf_counter() - wall, time.process_time() - cpu
    pipe = engine._txt2img if task == "txt2img" else engine._inpaint
    _time_parts(clock, pipe, [vae for vae in engine._vaes.values() if vae is not None])
    if task == "txt2img":
        request = GenerateRequest(model=model, prompt=PROMPT, width=SIZE, height=SIZE, seed=1)
    else:
        photo, mask = _photo_and_mask()
        request = InpaintRequest(model=model, prompt=PROMPT, image=photo, mask=mask, seed=1)
    queue = JobQueue(studio)
    wall, cpu = time.perf_counter(), time.process_time()
    job = queue.submit(request, session="bench")
    status = queue.wait(job, timeout=1500)
    result = queue.result(job)
    assert not result.cached, "a timed run must not be a cache hit"
    assert result.pngs[0]  # the bytes the user receives
    report = _report(clock, engine.configuration, load_wall, load_cpu, wall, cpu)
    queue.shutdown()
    services.reset()
    report["status"] = status.state.value if hasattr(status.state, "value") else str(status.state)
    return report


def _report(clock: Clock, configuration: str, load_wall, load_cpu, wall, cpu) -> dict:
    return {
        "configuration": configuration,
        "load_wall_s": load_wall,
        "load_cpu_s": load_cpu,
        "run_wall_s": time.perf_counter() - wall,
        "run_cpu_s": time.process_time() - cpu,
        "peak_rss_mib": _status_kib("VmHWM") / 1024,
        "parts_cpu_s": dict(clock.cpu),
        "parts_wall_s": dict(clock.wall),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_speed")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "MODELS", "TASK"), required=True)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    kind, folder, task = arguments.child
    if arguments.threads:
        import torch

        torch.set_num_threads(arguments.threads)
    work = _bare if kind == "bare" else _studio
    print(json.dumps(work(Path(folder), task)))
