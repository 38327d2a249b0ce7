"""The region a model works on: the crop box around a mask (padding, aspect, minimum side), the fit that runs it at
the model's working resolution and back, and the blend that pastes the output so that only masked pixels change."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.errors import BadMaskError
from core.masks.ops import EMPTY_MASK, as_l, bounding_box


def crop_box(mask: Image.Image, *, padding: int, aspect: float, min_side: int) -> tuple[int, int, int, int]:
    """The region a model processes: the mask's bounding box plus `padding`, grown (never shrunk) to `aspect`
    (width / height) and to at least `min_side` per side, but never beyond the image; moved to lie inside it.

    Pass the feathered mask, so the whole blend zone is inside the region.
    """
    if padding < 0 or min_side < 0 or not (math.isfinite(aspect) and aspect > 0):
        raise ValueError(f"bad crop parameters: padding={padding}, aspect={aspect}, min_side={min_side}")
    box = bounding_box(mask)
    if box is None:
        raise BadMaskError(EMPTY_MASK)
    image_width, image_height = mask.size
    left, top, right, bottom = box[0] - padding, box[1] - padding, box[2] + padding, box[3] + padding
    width, height = right - left, bottom - top
    if width / height < aspect:
        width = math.ceil(height * aspect - 1e-9)
    else:
        height = math.ceil(width / aspect - 1e-9)
    if min(width, height) < min_side:
        scale = max(min_side / width, min_side / height)
        width, height = math.ceil(width * scale - 1e-9), math.ceil(height * scale - 1e-9)
    width, height = min(width, image_width), min(height, image_height)
    x = min(max(round((left + right - width) / 2), 0), image_width - width)
    y = min(max(round((top + bottom - height) / 2), 0), image_height - height)
    return x, y, x + width, y + height


def paste_back(
    original: Image.Image, generated: Image.Image, feathered_mask: Image.Image, box: tuple[int, int, int, int]
) -> Image.Image:
    """`original` with `generated` (the box's new content) blended in through `feathered_mask`.

    out = original * (1 - m) + generated * m, only inside `box`; wherever m == 0 the output is byte-identical to
    `original`, alpha included. For RGBA, painted pixels become at least as opaque as the mask there.
    """
    result = original.copy()
    result.paste(blend_region(original, generated, feathered_mask, box), box[:2])
    return result


def blend_region(
    original: Image.Image, generated: Image.Image, feathered_mask: Image.Image, box: tuple[int, int, int, int]
) -> Image.Image:
    """The box's part of `paste_back`'s output (same mode as `original`): cost follows the box, not the image."""
    if original.mode not in ("RGB", "RGBA"):
        raise ValueError(f"paste_back expects an RGB or RGBA original, got {original.mode}")
    if feathered_mask.size != original.size:
        raise ValueError(f"mask size {feathered_mask.size} differs from image size {original.size}")
    left, top, right, bottom = box
    if not (0 <= left < right <= original.width and 0 <= top < bottom <= original.height):
        raise ValueError(f"box {box} is not inside the {original.size} image")
    if generated.size != (right - left, bottom - top):
        raise ValueError(f"generated size {generated.size} differs from the box {box}")
    before = np.asarray(original.crop(box))
    new = np.asarray(generated.convert("RGB")).astype(np.uint16)
    weight = np.asarray(as_l(feathered_mask).crop(box)).astype(np.uint16)[:, :, None]
    # Integer blend, rounded: where weight is 0 this is (255 * before + 127) // 255 == before, exactly.
    colour = ((before[:, :, :3] * (255 - weight) + new * weight + 127) // 255).astype(np.uint8)
    if original.mode == "RGBA":
        alpha = before[:, :, 3]
        alpha = np.where(weight[:, :, 0] > 0, np.maximum(alpha, weight[:, :, 0]), alpha).astype(np.uint8)
        colour = np.dstack([colour, alpha])
    return Image.fromarray(colour)


@dataclass(frozen=True)
class Fit:
    """How an image is run at a model's working resolution: scaled to `scaled_size`, padded to `padded_size`.

    Padding (right and bottom, by edge replication) rather than cropping keeps every pixel of the input in front of
    the model; `restore` cuts the padding off and scales back to `original_size` exactly.
    """

    original_size: tuple[int, int]
    scaled_size: tuple[int, int]
    padded_size: tuple[int, int]

    def apply(self, image: Image.Image, *, is_mask: bool = False) -> Image.Image:
        if image.size != self.original_size:
            raise ValueError(f"Fit.apply expects a {self.original_size} image, got {image.size}")
        scaled = _resize(image, self.scaled_size, is_mask)
        return _pad_with_edges(scaled, self.padded_size)

    def restore(self, image: Image.Image, *, is_mask: bool = False) -> Image.Image:
        if image.size != self.padded_size:
            raise ValueError(f"Fit.restore expects a {self.padded_size} image, got {image.size}")
        if self.scaled_size != self.padded_size:
            image = image.crop((0, 0, *self.scaled_size))
        return _resize(image, self.original_size, is_mask)


def plan_fit(size: tuple[int, int], working_resolution: int, multiple: int) -> Fit:
    """Scale `size` so its area is about `working_resolution`² (same aspect), then pad each side up to `multiple`.

    `working_resolution` 0 means native: no scaling, only padding (so `multiple` 1 is the identity).
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"cannot fit an image of size {size}")
    if working_resolution < 0 or multiple < 1:
        raise ValueError(f"bad fit parameters: working_resolution={working_resolution}, multiple={multiple}")
    if working_resolution == 0:
        scaled = (width, height)
    else:
        scale = working_resolution / math.sqrt(width * height)
        scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    padded = (_round_up(scaled[0], multiple), _round_up(scaled[1], multiple))
    return Fit(original_size=(width, height), scaled_size=scaled, padded_size=padded)


# --- fitting --------------------------------------------------------------------------------------------------------


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _resize(image: Image.Image, size: tuple[int, int], is_mask: bool) -> Image.Image:
    if image.size == size:
        return image
    if not is_mask:
        return image.resize(size, Image.Resampling.LANCZOS)
    resized = image.resize(size, Image.Resampling.NEAREST)
    return resized.point(lambda value: 255 if value >= 128 else 0)  # a model's mask stays strictly 0/255


def _pad_with_edges(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    pixels = np.asarray(image)
    pad = ((0, size[1] - image.height), (0, size[0] - image.width)) + ((0, 0),) * (pixels.ndim - 2)
    return Image.fromarray(np.pad(pixels, pad, mode="edge"))
