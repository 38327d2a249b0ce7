"""OpenVINO runs the UNet of SD 1.x / 2.x-class models (SD 1.5, SD 2.1, SD-Turbo, their inpainting
variants) on CPUs, inside the diffusers engine: same pipeline, scheduler, progress, cancel,
previews and runner (crop, paste back); only the UNet's forward pass changes.

Route, chosen by measurement. Both routes use the `openvino` package alone (optimum-intel pins
transformers < 5.6 and huggingface-hub < 1.22, older than ours, so its OV pipelines are out):
- `openvino.convert_model` of the UNet, once per model, with dynamic batch and latent size, saved
  as IR next to the result store (keyed by the model's source and the package versions); each run's
  shape is then fixed with `reshape` and compiled (OpenVINO caches compiled blobs on disk too).
- `torch.compile(backend="openvino")` traces again in every fresh process (TorchDynamo), and its
  graph breaks around diffusers' Python control flow leave parts in PyTorch.
The first was taken. Measured on this 2-core Xeon (AMX), real-size SD-Turbo UNet, 512 px, batch 1,
CPU seconds of one UNet call: PyTorch float32 15.0, PyTorch bfloat16 autocast 11.7, OpenVINO f32
7.9, OpenVINO bf16 2.7 (bench/cpu_speed.py has the end-to-end figures). Conversion costs ~6 min of
wall time on this busy machine, once per model; compiling a new shape ~11 s (then cached).

Precision: bf16 where the CPU computes it natively (AVX512-BF16/AMX; OpenVINO reports "BF16"),
else f32. bf16 changes pixels slightly against PyTorch float32 (UNet outputs differ by up to
~0.08 here): the precision is part of the engine version, hence of every cache key. Memory: the
PyTorch UNet's weights are dropped once its IR exists; the compiled model holds its own (bf16:
half the float32 size).

Turned off with STUDIO_OPENVINO=0; used only on the CPU and only for UNets it can run whole
(no extra conditioning inputs: SDXL's added embeddings and LCM-distilled timestep conditioning stay
on PyTorch).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)

# Peak RSS with OpenVINO / with PyTorch, bench/cpu_speed.py: SD-Turbo 10.0 / 6.3 GB, SD 1.5 Inpainting
# 9.3 / 5.6 GB (the compiled model's own weights beside the mapped IR while it loads).
PEAK_MEMORY_FACTOR = 1.65


@cache
def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None  # without importing it (cache keys ask this)


def enabled(device: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether models run with OpenVINO here: on the CPU, with the package, unless turned off."""
    return Settings.from_env(environ).openvino and device.partition(":")[0] == "cpu" and available()


@cache
def precision() -> str:
    """ "bf16" where the CPU computes bfloat16 natively (what OpenVINO reports as "BF16"), else "f32".
    Read from /proc/cpuinfo on Linux, so cache keys need no OpenVINO import."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        import openvino as ov

        return "bf16" if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f32"
    return "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "f32"


def version_suffix(device: str = "cpu") -> str:
    """What the engine version says about OpenVINO on this host ("" when it is not used)."""
    if not enabled(device):
        return ""
    from importlib import metadata

    return f"-openvino-{metadata.version('openvino')}-{precision()}"


def supports(unet) -> bool:
    config = unet.config
    return (
        config.get("addition_embed_type") is None
        and config.get("time_cond_proj_dim") is None
        and config.get("class_embed_type") is None
        and not config.get("num_class_embeds")
    )


class _Forward:
    """What `unet(sample, t, encoder_hidden_states=..., return_dict=False)` returns, from OpenVINO."""

    def __init__(self, core, ir: Path, threads: int, cache_dir: Path, latent_multiple: int):
        self._core = core
        self._latent_multiple = latent_multiple
        self._ir = ir
        self._config = {
            "INFERENCE_PRECISION_HINT": precision(),
            "INFERENCE_NUM_THREADS": threads,
            "CACHE_DIR": str(cache_dir),
        }
        self._compiled: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, sample, timestep, encoder_hidden_states, *args, return_dict: bool = True, **extra):
        import torch
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        unused = [name for name, value in extra.items() if value is not None]
        if args or unused:
            raise TypeError(f"the OpenVINO UNet takes no {', '.join(unused) or 'extra positional arguments'}")
        timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)[:1].reshape(())
        # The traced graph concatenates skip connections without PyTorch's `upsample_size` fix-up, so a latent
        # side that does not halve evenly through every downsampler is padded (edge values) and cropped back.
        height, width = sample.shape[-2:]
        pad_bottom, pad_right = -height % self._latent_multiple, -width % self._latent_multiple
        padded = torch.nn.functional.pad(sample.float(), (0, pad_right, 0, pad_bottom), mode="replicate")
        inputs = [padded.contiguous(), timestep, encoder_hidden_states.float().contiguous()]
        compiled = self._for(tuple(tuple(value.shape) for value in inputs))
        output = torch.from_numpy(compiled([value.numpy() for value in inputs])[0].copy())
        output = output[..., :height, :width].to(sample.dtype)
        return UNet2DConditionOutput(sample=output) if return_dict else (output,)

    def _for(self, shapes: tuple) -> Any:
        with self._lock:  # one compile per shape, even if previews or runs overlap
            compiled = self._compiled.get(shapes)
            if compiled is None:
                # Keep one: each compiled model holds its own copy of the weights. Drop the last one before
                # compiling the next (a call still running keeps its own reference), else a size switch
                # holds two copies at its peak.
                self._compiled.clear()
                model = self._core.read_model(str(self._ir))
                model.reshape({port: list(shape) for port, shape in zip(model.inputs, shapes, strict=True)})
                compiled = self._core.compile_model(model, "CPU", self._config)
                del model  # the reshaped graph is not needed once compiled
                self._compiled = {shapes: compiled}
            return compiled


def accelerate(unet, source: str, cache_root: Path) -> bool:
    """Run `unet` through OpenVINO from now on (converting it once, kept under `cache_root`).
    Returns False, leaving it to PyTorch, for a UNet this path does not cover."""
    if not supports(unet):
        return False
    import openvino as ov
    import torch

    ir = _ir_path(unet, source, cache_root)
    if not ir.is_file():
        _convert(unet, ir)
    core = ov.Core()
    latent_multiple = 2 ** (len(unet.config.block_out_channels) - 1)  # one halving per downsampling block
    unet.forward = _Forward(core, ir, torch.get_num_threads(), cache_root / "compiled", latent_multiple)
    for parameter in unet.parameters():  # OpenVINO holds the weights now: free PyTorch's copy
        parameter.data = torch.empty(0, dtype=parameter.dtype)
    return True


def _ir_path(unet, source: str, cache_root: Path) -> Path:
    from importlib import metadata

    identity = "\n".join(
        (
            source,
            json_config(unet.config),
            metadata.version("openvino"),
            metadata.version("diffusers"),
            metadata.version("torch"),
        )
    )
    return cache_root / hashlib.sha256(identity.encode()).hexdigest()[:24] / "unet.xml"


def json_config(config) -> str:
    import json

    return json.dumps(dict(config), sort_keys=True, default=str)


def _convert(unet, ir: Path) -> None:
    """UNet -> OpenVINO IR with dynamic batch and latent size, written atomically."""
    import openvino as ov
    import torch

    class Call(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.inner(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    config = unet.config
    size = int(config.sample_size) if isinstance(config.sample_size, int) else 64
    width = int(config.cross_attention_dim)
    example = (torch.randn(1, config.in_channels, size, size), torch.tensor(999.0), torch.randn(1, 77, width))
    shapes = [ov.PartialShape([-1, config.in_channels, -1, -1]), ov.PartialShape([]), ov.PartialShape([-1, -1, width])]
    log.info("converting a UNet to OpenVINO once (minutes for a real-size model)")
    with torch.no_grad():
        model = ov.convert_model(Call(unet).eval(), example_input=example, input=shapes)
    ir.parent.mkdir(parents=True, exist_ok=True)
    temporary = ir.with_name(f"unet.{os.getpid()}.{threading.get_ident()}.xml")
    ov.save_model(model, str(temporary), compress_to_fp16=False)
    temporary.with_suffix(".bin").replace(ir.with_suffix(".bin"))
    temporary.replace(ir)  # the .xml last: its presence means the pair is complete


__all__ = ["accelerate", "available", "enabled", "precision", "supports", "version_suffix"]
