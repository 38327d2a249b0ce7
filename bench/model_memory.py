"""Peak RSS after switching through 3 models with 1 resident ÷ peak RSS with 1 model (target <= 1.2).

Three different pipelines (the tiny test pipeline's text encoder, tokenizer and VAE around a
~200 MB UNet, each with its own random weights) so that model memory dominates the Python and
torch baseline. Each scenario runs in a fresh process, alternating which goes first:

- one model: load model A through ModelPool(max_resident=1) and generate three times;
- switching: generate once with A, then B, then C through the same pool (each load releases the
  previous model).

Peak RSS is the kernel's high-water mark (VmHWM in /proc/self/status). Also reported: the RSS
after imports (the baseline), so the model part of each peak can be compared too.

Child process entry (used by the benchmark itself):
    python -m bench.model_memory --child CATALOGUE MODEL [MODEL ...] [--threads N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread
from bench.workspace import Workspace, child_report

NAME = "model_memory"
TARGET = 1.2
MODELS = ("memory-a", "memory-b", "memory-c")
UNET_CHANNELS = (96, 192, 384)  # ~50 M parameters, ~200 MB in float32
SIZE, STEPS = 128, 2


def run(workspace: Workspace) -> Outcome:
    catalogue_file = _build_pipelines(workspace)
    environment = workspace.environment()
    repeats = workspace.repeats(4, quick=2)
    one, switching = [], []
    threads = ["--threads", str(workspace.options.threads)]
    for repeat in range(repeats):
        scenarios = [("one", [MODELS[0]] * 3), ("switching", list(MODELS))]
        if repeat % 2:
            scenarios.reverse()
        for name, models in scenarios:
            report = child_report("bench.model_memory", ["--child", str(catalogue_file), *models, *threads], environment)
            (one if name == "one" else switching).append(report)
    ratios = [s["peak_kib"] / o["peak_kib"] for s, o in zip(switching, one, strict=True)]
    model_ratios = [
        (s["peak_kib"] - s["baseline_kib"]) / (o["peak_kib"] - o["baseline_kib"]) for s, o in zip(switching, one, strict=True)
    ]

    def mib(reports: list[dict], key: str) -> dict:
        return Spread.of([report[key] / 1024 for report in reports]).as_json()

    figure = Figure(
        figure="peak RSS: 3 models switched / 1 model",
        case=f"3 pipelines, UNet {_unet_megabytes(workspace):.0f} MB each, max_resident=1",
        value=Spread.of(ratios),
        unit="x",
        target=Target.at_most(TARGET),
        details={
            "peak_mib_one_model": mib(one, "peak_kib"),
            "peak_mib_switching": mib(switching, "peak_kib"),
            "baseline_mib_after_imports": mib(one + switching, "baseline_kib"),
            "rss_mib_at_end_one_model": mib(one, "final_kib"),
            "rss_mib_at_end_switching": mib(switching, "final_kib"),
            "anonymous_mib_at_end_one_model": mib(one, "final_anonymous_kib"),
            "file_backed_mib_at_end_one_model": mib(one, "final_file_kib"),
            "model_part_ratio": Spread.of(model_ratios).as_json(),
            "resident_at_end": switching[-1]["resident"],
        },
    )
    notes = {
        "what": __doc__.strip().splitlines()[0],
        "model_part_ratio": "(peak - baseline) switching / (peak - baseline) one model: the stricter reading",
    }
    return Outcome([figure], notes)


def _unet_megabytes(workspace: Workspace) -> float:
    folder = workspace.root / "memory-pipelines" / MODELS[0] / "unet"
    return sum(path.stat().st_size for path in folder.glob("*.safetensors")) / 1e6


def _build_pipelines(workspace: Workspace) -> Path:
    """Three pipelines with different ~200 MB UNets, and a catalogue naming them."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    root = workspace.scratch("memory-pipelines")
    base = StableDiffusionPipeline.from_pretrained(workspace.tiny_pipelines["txt2img"])
    entries = []
    for number, model_id in enumerate(MODELS):
        with torch.random.fork_rng():
            torch.manual_seed(100 + number)
            unet = UNet2DConditionModel(
                sample_size=SIZE // 8,
                in_channels=4,
                out_channels=4,
                block_out_channels=UNET_CHANNELS,
                layers_per_block=2,
                down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
                cross_attention_dim=base.text_encoder.config.hidden_size,
                attention_head_dim=8,
                norm_num_groups=32,
            ).eval()
        base.register_modules(unet=unet)
        base.save_pretrained(root / model_id)
        entries.append(
            f"[models.{model_id}]\n"
            f'name = "Memory test {model_id[-1].upper()}"\n'
            'tasks = ["txt2img"]\n'
            'engine = "diffusers"\n'
            f"path = {json.dumps(str(root / model_id))}\n"
            f"working_resolution = {SIZE}\nsize_multiple = 8\nmax_side = 512\n"
            f"default_steps = {STEPS}\ndefault_guidance = 7.5\n"
        )
    catalogue_file = root / "models.toml"
    catalogue_file.write_text("\n".join(entries), encoding="utf-8")
    return catalogue_file


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])  # "VmHWM:   123456 kB"
    raise RuntimeError(f"/proc/self/status has no {field}")


def _child(catalogue_file: str, models: list[str], threads: int) -> dict:
    import torch

    from core.catalogue import Catalogue
    from core.engines.diffusion import DiffusionEngine  # noqa: F401  (its imports belong to the baseline)
    from core.pool import ModelPool
    from core.requests import GenerateRequest
    from core.runner import Studio

    if threads:
        torch.set_num_threads(threads)
    baseline = _status_kib("VmRSS")
    studio = Studio(Catalogue.load(Path(catalogue_file)), ModelPool(1), store=None)
    for seed, model in enumerate(models):
        request = GenerateRequest(model=model, prompt="a red boat", width=SIZE, height=SIZE, num_inference_steps=STEPS, seed=seed)
        studio.run(studio.prepare(request))
    return {
        "baseline_kib": baseline,
        "peak_kib": _status_kib("VmHWM"),
        "final_kib": _status_kib("VmRSS"),
        "final_anonymous_kib": _status_kib("RssAnon"),  # heap: weights and tensors
        "final_file_kib": _status_kib("RssFile"),  # mapped files: libraries, safetensors still mapped
        "resident": studio.pool.resident(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.model_memory")
    parser.add_argument("--child", nargs="+", metavar="ARG", required=True, help="CATALOGUE MODEL [MODEL ...]")
    parser.add_argument("--threads", type=int, default=1)
    arguments = parser.parse_args()
    catalogue, *model_ids = arguments.child
    print(json.dumps(_child(catalogue, model_ids, arguments.threads)))
