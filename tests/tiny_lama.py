"""A tiny stand-in for the LaMa ONNX export, with the same interface (see core/engines/lama.py).

`TinyLama` fills the masked pixels with a blur of the kept pixels around them (a normalised box
blur at full resolution, and a coarse one at 1/8 for the middle of larger holes), so the result
is deterministic and depends on the photo. Exported with torch.onnx.export like the real one:
inputs "image" [1, 3, 512, 512] in [0, 1] and "mask" [1, 1, 512, 512] in {0, 1}; output
"output" [1, 3, 512, 512] in [0, 255] (as Carve's export) or [0, 1] (as some other exports).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

SIDE = 512
_FINE = 9  # box side at full resolution
_COARSE_STEP = 8  # the coarse blur works at 1/8
_COARSE = 33  # box side at 1/8 resolution: reaches ~130 px into a hole


def _box(x: torch.Tensor, side: int) -> torch.Tensor:
    """Separable box blur, same size out."""
    half = side // 2
    x = F.avg_pool2d(x, (1, side), stride=1, padding=(0, half))
    return F.avg_pool2d(x, (side, 1), stride=1, padding=(half, 0))


class TinyLama(torch.nn.Module):
    def __init__(self, output_scale: float):
        super().__init__()
        self.output_scale = output_scale

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - mask
        known = image * keep
        fine_weight = _box(keep, _FINE)
        fine = _box(known, _FINE) / fine_weight.clamp_min(1e-6)
        small_known = F.avg_pool2d(known, _COARSE_STEP)
        small_weight = _box(F.avg_pool2d(keep, _COARSE_STEP), _COARSE)
        coarse = _box(small_known, _COARSE) / small_weight.clamp_min(1e-6)
        coarse = F.interpolate(coarse, scale_factor=_COARSE_STEP, mode="nearest")
        fill = torch.where(fine_weight > 0.05, fine, coarse)
        return (known + fill * mask) * self.output_scale


def export_tiny_lama(path: Path, *, output_scale: float, named_batch: bool = False) -> Path:
    """Write a TinyLama export to `path`. `output_scale` 255.0 answers in [0, 255], 1.0 in [0, 1];
    `named_batch` gives the batch axis a name instead of 1, as some LaMa exports do."""
    image = torch.rand(1, 3, SIDE, SIDE)
    mask = (torch.rand(1, 1, SIDE, SIDE) > 0.9).float()
    dynamic_axes = {"image": {0: "batch"}, "mask": {0: "batch"}, "output": {0: "batch"}} if named_batch else None
    torch.onnx.export(
        TinyLama(output_scale).eval(),
        (image, mask),
        str(path),
        input_names=["image", "mask"],
        output_names=["output"],
        dynamic_axes=dynamic_axes,
        opset_version=17,
        dynamo=False,  # the TorchScript exporter needs no onnxscript
    )
    return path


# The built-in entry proposed for core/models.toml, repeated here so tests check its behaviour.
HUB_LAMA_ENTRY = """
[models.lama]
name = "LaMa (object removal)"
tasks = ["inpaint"]
engine = "lama"
hub = "Carve/LaMa-ONNX"
file = "lama_fp32.onnx"
working_resolution = 512
size_multiple = 8
default_steps = 1
default_guidance = 0.0
licence = "Apache-2.0"
"""


def write_lama_catalogue(path: Path, exports: dict[str, Path]) -> Path:
    """A catalogue file (the format of core/models.toml): one tiny-LaMa entry per export, by id,
    and the hub `lama` entry."""
    tables = "".join(
        f"\n[models.{model_id}]\n"
        f'name = "Tiny LaMa {model_id} (test)"\n'
        'tasks = ["inpaint"]\n'
        'engine = "lama"\n'
        f"path = {json.dumps(str(export))}\n"
        "working_resolution = 512\n"
        "size_multiple = 8\n"
        "default_steps = 1\n"
        "default_guidance = 0.0\n"
        for model_id, export in exports.items()
    )
    path.write_text(tables + HUB_LAMA_ENTRY, encoding="utf-8")
    return path
