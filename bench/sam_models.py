"""Real-size stand-ins of MobileSAM (random weights: no weights can be downloaded here), exported to
ONNX under the interface of Acly's MobileSAM export (core/engines/sam.py) with the test suite's
exporters (tests/tiny_sam.py), so a click is timed on networks of the real size and shape.

- Encoder: MobileSAM's TinyViT ("vit_t": embed dims 64/128/160/320, depths 2/2/6/2, heads 2/4/5/10,
  windows 7/7/14/7, MBConv stage first, the last patch merging at stride 1 so 1024 px give 64x64
  tokens; then SAM's neck to 256 channels), ~5.7 M parameters, written from the TinyViT paper and
  MobileSAM's description; wrapped as Acly's export wraps it: [H, W, 3] 0..255 in, normalised with
  SAM's pixel mean/std and padded right/bottom to 1024 x 1024 inside the graph.
- Decoder: SAM's prompt decoder from transformers (`SamMaskDecoder`: two-way transformer, 256
  channels, 4.06 M parameters, MobileSAM's and SAM ViT-B/H's decoder) with SAM's positional point
  embedding in front (its prompt encoder has 6 k parameters) and SAM's mask post-processing behind.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tests.tiny_sam import DECODER_FILE, ENCODER_FILE, SIDE, export_decoder, export_encoder, sam_postprocess

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class ConvBN(nn.Sequential):
    def __init__(self, channels_in: int, channels_out: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(channels_in, channels_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(channels_out),
        )


class MBConv(nn.Module):
    """Inverted residual (expand x4, depthwise 3x3, project), TinyViT's first stage."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = dim * 4
        self.body = nn.Sequential(
            ConvBN(dim, hidden), nn.GELU(), ConvBN(hidden, hidden, 3, groups=hidden), nn.GELU(), ConvBN(hidden, dim)
        )

    def forward(self, x):
        return F.gelu(x + self.body(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvBN(dim, out_dim), nn.GELU(), ConvBN(out_dim, out_dim, 3, stride, groups=out_dim), nn.GELU(),
            ConvBN(out_dim, out_dim),
        )  # fmt: skip

    def forward(self, x):  # [B, C, H, W] -> [B, C', H', W']
        return self.body(x)


class WindowAttention(nn.Module):
    """Multi-head attention inside a window, with TinyViT's learned bias per relative offset."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.key_dim = heads, dim // heads
        self.scale = self.key_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        cells = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        offsets = (cells[:, :, None] - cells[:, None, :]).abs()  # [2, N, N]
        self.register_buffer("bias_index", offsets[0] * window + offsets[1], persistent=False)
        self.biases = nn.Parameter(torch.randn(heads, window * window) * 0.02)

    def forward(self, x):  # [windows, N, C]
        count, tokens, channels = x.shape
        q, k, v = self.qkv(self.norm(x)).view(count, tokens, 3, self.heads, self.key_dim).permute(2, 0, 3, 1, 4)
        attention = (q @ k.transpose(-2, -1)) * self.scale + self.biases[:, self.bias_index]
        x = (attention.softmax(-1) @ v).transpose(1, 2).reshape(count, tokens, channels)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.window = window
        self.attention = WindowAttention(dim, heads, window)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, x):  # [B, C, H, W]
        batch, channels, height, width = x.shape
        w = self.window
        pad_bottom, pad_right = (-height) % w, (-width) % w
        tokens = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, pad_right, 0, pad_bottom))
        rows, columns = (height + pad_bottom) // w, (width + pad_right) // w
        windows = tokens.view(batch, rows, w, columns, w, channels).transpose(2, 3).reshape(-1, w * w, channels)
        attended = self.attention(windows).view(batch, rows, columns, w, w, channels).transpose(2, 3)
        attended = attended.reshape(batch, rows * w, columns * w, channels)[:, :height, :width]
        x = x + attended.permute(0, 3, 1, 2)
        x = self.local_conv(x)
        return x + self.mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mean) / torch.sqrt(variance + 1e-6) + self.bias[:, None, None]


class TinyViTSam(nn.Module):
    """MobileSAM's image encoder: [1, 3, 1024, 1024] normalised -> [1, 256, 64, 64]."""

    def __init__(self, dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), heads=(2, 4, 5, 10), windows=(7, 7, 14, 7)):
        super().__init__()
        self.patch_embed = nn.Sequential(ConvBN(3, dims[0] // 2, 3, 2), nn.GELU(), ConvBN(dims[0] // 2, dims[0], 3, 2))
        stages: list[nn.Module] = [nn.Sequential(*(MBConv(dims[0]) for _ in range(depths[0])))]
        stages.append(PatchMerging(dims[0], dims[1], 2))
        for stage in range(1, 4):
            stages += [TinyViTBlock(dims[stage], heads[stage], windows[stage]) for _ in range(depths[stage])]
            if stage < 3:  # 128 -> 64 tokens a side, then MobileSAM keeps 64 (stride 1 before the last stage)
                stages.append(PatchMerging(dims[stage], dims[stage + 1], 2 if stage == 1 else 1))
        self.stages = nn.Sequential(*stages)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[3], 256, 1, bias=False), LayerNorm2d(256), nn.Conv2d(256, 256, 3, padding=1, bias=False),
            LayerNorm2d(256),
        )  # fmt: skip

    def forward(self, x):
        return self.neck(self.stages(self.patch_embed(x)))


class AclyEncoder(nn.Module):
    """The export's own preprocessing around the encoder: [H, W, 3] RGB 0..255, longer side 1024."""

    def __init__(self):
        super().__init__()
        self.encoder = TinyViTSam()
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN)[:, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(PIXEL_STD)[:, None, None], persistent=False)

    def forward(self, input_image):
        x = (input_image.permute(2, 0, 1) - self.mean) / self.std
        height, width = input_image.shape[0], input_image.shape[1]
        x = F.pad(x[None], (0, SIDE - width, 0, SIDE - height))
        return self.encoder(x)


class SamPromptDecoder(nn.Module):
    """SAM's mask decoder behind SamOnnxModel's inputs (single mask output)."""

    def __init__(self):
        super().__init__()
        from transformers import SamConfig
        from transformers.models.sam.modeling_sam import SamMaskDecoder, SamPositionalEmbedding

        config = SamConfig()
        self.decoder = SamMaskDecoder(config.mask_decoder_config)
        self.positions = SamPositionalEmbedding(config.vision_config)
        self.labels = nn.Embedding(5, 256)
        self.mask_down = nn.Conv2d(1, 256, 4, stride=4)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        grid = torch.ones(64, 64)
        y, x = (grid.cumsum(0) - 0.5) / 64, (grid.cumsum(1) - 0.5) / 64
        image_pe = self.positions(torch.stack([x, y], dim=-1)).permute(2, 0, 1)[None]
        points = self.positions(((point_coords + 0.5) / SIDE)[:, None])  # [1, 1, N, 256]
        sparse = points + self.labels((point_labels + 1).long())[:, None]
        dense = has_mask_input * self.mask_down(mask_input)
        masks, scores = self.decoder(image_embeddings, image_pe, sparse, dense, multimask_output=False)
        low_res = masks[:, 0, :1]
        return sam_postprocess(low_res, orig_im_size), scores[:, 0], low_res


def parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def export_mobile_sam(folder: Path, seed: int = 0) -> tuple[Path, Path, dict[str, int]]:
    """(encoder file, decoder file, parameter counts) of the real-size stand-ins, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    encoder, decoder = AclyEncoder(), SamPromptDecoder()
    counts = {"encoder": parameters(encoder), "decoder": parameters(decoder)}
    with torch.no_grad():
        return export_encoder(encoder, folder / ENCODER_FILE), export_decoder(decoder, folder / DECODER_FILE), counts
