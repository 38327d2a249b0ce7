"""Tiny stand-ins for the MobileSAM ONNX export (see core/engines/sam.py), exported with
torch.onnx.export under the exact input/output names, shapes and coordinate conventions.

Encoder: "input_image" [H, W, 3] RGB 0..255 (longer side 1024), normalised and padded to 1024 inside,
as Acly's export does; "image_embeddings" [1, 256, 64, 64] holds in channel 0 each 16x16 cell's mean
brightness (0..1; the padding is -1) — a real function of the photo, so a wrong resize shows.

Decoder: SAM's SamOnnxModel interface. Its low-res 256x256 answer selects the cells whose brightness
is within 0.1 of a cell under an include point (label 1), drops a disc of radius 96 (in the 1024
frame) around each exclude point (label 0), and adds the box given by labels 2 and 3; points with
label -1 are ignored. Coordinates get SAM's +0.5, masks go through SAM's post-processing (bilinear
to 1024x1024, crop to the resized size from `orig_im_size`, bilinear to `orig_im_size`). Logits are
+/-10. So a point scaled with the wrong factor selects the wrong region, and a mask at the wrong
resolution is misplaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

SIDE = 1024
CELL = 16
TOLERANCE = 0.1
EXCLUDE_RADIUS = 96.0
ENCODER_FILE, DECODER_FILE = "mobile_sam_image_encoder.onnx", "sam_mask_decoder_single.onnx"


class TinyEncoder(torch.nn.Module):
    def forward(self, input_image: torch.Tensor) -> torch.Tensor:
        brightness = input_image.mean(dim=2) / 255.0  # [h, w]
        h, w = brightness.shape
        padded = F.pad(brightness[None, None], (0, SIDE - w, 0, SIDE - h), value=-1.0)
        valid = F.pad(torch.ones_like(brightness)[None, None], (0, SIDE - w, 0, SIDE - h), value=0.0)
        cells = F.avg_pool2d(padded * valid, CELL) / F.avg_pool2d(valid, CELL).clamp_min(1e-6)
        cells = torch.where(F.avg_pool2d(valid, CELL) > 0.5, cells, torch.full_like(cells, -1.0))
        return torch.cat([cells, torch.zeros(1, 255, SIDE // CELL, SIDE // CELL)], dim=1)


class TinyDecoder(torch.nn.Module):
    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        coords = point_coords[0] + 0.5  # SAM's _embed_points shift
        labels = point_labels[0]
        brightness = image_embeddings[0, 0]  # [64, 64]
        grid = (torch.arange(256, dtype=torch.float32) + 0.5) * (SIDE / 256)
        gy, gx = grid[:, None], grid[None, :]
        cell = (coords / CELL).floor().clamp(0, SIDE // CELL - 1).long()
        values = brightness[cell[:, 1], cell[:, 0]]  # [N]
        low = F.interpolate(brightness[None, None], size=(256, 256), mode="nearest")[0, 0]
        similar = (low[None] - values[:, None, None]).abs() < TOLERANCE
        include = (similar & (labels == 1)[:, None, None]).any(0)
        distance = (gx[None] - coords[:, 0, None, None]) ** 2 + (gy[None] - coords[:, 1, None, None]) ** 2
        exclude = ((distance < EXCLUDE_RADIUS**2) & (labels == 0)[:, None, None]).any(0)
        big = torch.full((), 1e9)
        is_tl, is_br = labels == 2, labels == 3
        left = torch.where(is_tl, coords[:, 0], big).min()
        top = torch.where(is_tl, coords[:, 1], big).min()
        right = torch.where(is_br, coords[:, 0], -big).max()
        bottom = torch.where(is_br, coords[:, 1], -big).max()
        in_box = (gx >= left) & (gx <= right) & (gy >= top) & (gy <= bottom)
        selected = (include | in_box) & ~exclude
        # A previous mask, when given, adds to the logits (SAM reads it as a dense prompt).
        low_res = torch.where(selected, 10.0, -10.0)[None, None] + has_mask_input * mask_input
        masks = sam_postprocess(low_res, orig_im_size)
        return masks, torch.ones(1, 1), low_res



def sam_postprocess(masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
    """SamOnnxModel.mask_postprocessing: low-res logits -> 1024x1024, crop the padding, -> orig_im_size."""
    masks = F.interpolate(masks, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    scale = SIDE / orig_im_size.max()
    prepadded = torch.floor(orig_im_size * scale + 0.5).to(torch.int64)
    masks = masks[..., : prepadded[0], : prepadded[1]]
    size = orig_im_size.to(torch.int64)
    return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def export_encoder(encoder: torch.nn.Module, path: Path) -> Path:
    """`encoder` exported as Acly's MobileSAM encoder: "input_image" [H, W, 3] -> "image_embeddings"."""
    torch.onnx.export(
        encoder.eval(),
        (torch.rand(768, 1024, 3) * 255,),
        str(path),
        input_names=["input_image"],
        output_names=["image_embeddings"],
        dynamic_axes={"input_image": {0: "height", 1: "width"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def export_decoder(decoder: torch.nn.Module, path: Path) -> Path:
    """`decoder` exported with SamOnnxModel's interface (single mask), any number of points."""
    inputs = (
        torch.rand(1, 256, 64, 64),
        torch.randint(0, 1024, (1, 5, 2)).float(),
        torch.tensor([[1.0, 0.0, 2.0, 3.0, -1.0]]),
        torch.zeros(1, 1, 256, 256),
        torch.zeros(1),
        torch.tensor([768.0, 1024.0]),
    )
    torch.onnx.export(
        decoder.eval(),
        inputs,
        str(path),
        input_names=[
            "image_embeddings",
            "point_coords",
            "point_labels",
            "mask_input",
            "has_mask_input",
            "orig_im_size",
        ],
        output_names=["masks", "iou_predictions", "low_res_masks"],
        dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def export_tiny_sam(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return (
        export_encoder(TinyEncoder(), folder / ENCODER_FILE),
        export_decoder(TinyDecoder(), folder / DECODER_FILE),
    )


def write_sam_catalogue(path: Path, encoder: Path) -> Path:
    path.write_text(
        "[models.tiny-sam]\n"
        'name = "Tiny SAM (test)"\n'
        'tasks = ["segment"]\n'
        'engine = "sam"\n'
        f"path = {json.dumps(str(encoder))}\n"
        "working_resolution = 1024\n"
        "size_multiple = 1\n"
        "default_steps = 1\n"
        "default_guidance = 0.0\n"
        f'options = {{ decoder = "{DECODER_FILE}" }}\n',
        encoding="utf-8",
    )
    return path
