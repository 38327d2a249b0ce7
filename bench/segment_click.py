"""Time of a click after the first (decoder only) on a 4000x3000 photo, with a real-size stand-in of the
chosen model's prompt decoder (target <= 0.2 s); and the first click (encoder + decoder).

No weights can be downloaded here, so the decoder is SAM's own architecture with random weights:
transformers' `SamMaskDecoder` (two-way transformer, 256 channels, 4.06 M parameters, exactly
MobileSAM's and SAM ViT-B/H's decoder) with a cheap point embedding in front (SAM's prompt encoder
has 6 k parameters) and SAM's mask post-processing behind, exported to ONNX under the export's
names, shapes and conventions (core/engines/sam.py). The encoder is the tiny stand-in of the tests
(tests/tiny_sam.py): MobileSAM's TinyViT encoder is not built here, so the first-click figure is
only the app's own share of it. Timed through `Studio.segment` (what the page, CLI and API call):
new clicks on the same photo, onnxruntime on this CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread
from bench.workspace import Workspace

NAME = "segment_click"
TARGET_S = 0.2
SIZE = (4000, 3000)


def export_real_size_decoder(path: Path) -> Path:
    import torch
    import torch.nn.functional as F
    from transformers import SamConfig
    from transformers.models.sam.modeling_sam import SamMaskDecoder, SamPositionalEmbedding

    config = SamConfig()

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = SamMaskDecoder(config.mask_decoder_config)
            self.positions = SamPositionalEmbedding(config.vision_config)
            self.labels = torch.nn.Embedding(5, 256)
            self.mask_down = torch.nn.Conv2d(1, 256, 4, stride=4)

        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
            grid = torch.ones(64, 64)
            y, x = (grid.cumsum(0) - 0.5) / 64, (grid.cumsum(1) - 0.5) / 64
            image_pe = self.positions(torch.stack([x, y], dim=-1)).permute(2, 0, 1)[None]
            points = self.positions(((point_coords + 0.5) / 1024)[:, None])  # [1, 1, N, 256]
            sparse = points + self.labels((point_labels + 1).long())[:, None]
            dense = has_mask_input * self.mask_down(mask_input)
            masks, scores = self.decoder(image_embeddings, image_pe, sparse, dense, multimask_output=False)
            low_res = masks[:, 0, :1]
            upscaled = F.interpolate(low_res, size=(1024, 1024), mode="bilinear", align_corners=False)
            prepadded = torch.floor(orig_im_size * (1024 / orig_im_size.max()) + 0.5).to(torch.int64)
            upscaled = upscaled[..., : prepadded[0], : prepadded[1]]
            size = orig_im_size.to(torch.int64)
            return (
                F.interpolate(upscaled, size=(size[0], size[1]), mode="bilinear", align_corners=False),
                scores[:, 0],
                low_res,
            )

    model = Decoder().eval()
    inputs = (
        torch.rand(1, 256, 64, 64),
        torch.rand(1, 3, 2) * 1000,
        torch.tensor([[1.0, 0.0, -1.0]]),
        torch.zeros(1, 1, 256, 256),
        torch.zeros(1),
        torch.tensor([768.0, 1024.0]),
    )
    torch.onnx.export(
        model,
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


def run(workspace: Workspace) -> Outcome:
    from PIL import Image

    from core.catalogue import Catalogue
    from core.pool import ModelPool
    from core.requests import SegmentRequest
    from core.runner import Studio
    from tests.tiny_sam import export_tiny_sam, write_sam_catalogue

    folder = workspace.scratch("segment-models")
    encoder, decoder = export_tiny_sam(folder)
    export_real_size_decoder(decoder)  # replaces the tiny decoder beside the encoder
    studio = Studio(Catalogue.load(write_sam_catalogue(folder / "models.toml", encoder)), ModelPool(1), None)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8))
    points = [(float(x), float(y), bool(i % 3)) for i, (x, y) in enumerate(rng.uniform(100, 2900, (12, 2)))]

    started = time.perf_counter()
    studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=(points[0][:2] + (True,),)))
    first = time.perf_counter() - started
    clicks, cpu = [], []
    for count in range(2, len(points) + 1):  # each click adds a point, as on the page
        cpu_started, started = time.process_time(), time.perf_counter()
        mask = studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=tuple(points[:count])))
        clicks.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    assert mask.size == SIZE
    decoder_parameters = 4.06e6
    return Outcome(
        [
            Figure(
                figure=f"a click after the first, {SIZE[0]}x{SIZE[1]} photo",
                case="real-size SAM decoder (random weights), Studio.segment, 2-12 points",
                value=Spread.of(clicks),
                unit="s",
                target=Target.at_most(TARGET_S),
                details={"decoder_parameters": decoder_parameters, "clicks_s": clicks, "clicks_cpu_s": cpu},
            ),
            Figure(
                figure="CPU seconds of a click after the first (all threads)",
                case="the same clicks: steadier than wall time on a loaded machine",
                value=Spread.of(cpu),
                unit="s",
                target=Target.report(),
                details={},
            ),
            Figure(
                figure="first click (embedding + decoder)",
                case="tiny encoder stand-in: the app's share only, not TinyViT's time",
                value=Spread.of([first]),
                unit="s",
                target=Target.report(),
                details={},
            ),
        ],
        {"what": __doc__.strip().splitlines()[0]},
    )
