"""Raster operations on masks: threshold, grow/shrink, feather, invert, and the mask's bounding box.

Each works on the mask's bounding box plus the margin it can reach, so cost follows the mask, not the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageOps

from core.errors import BadMaskError

EMPTY_MASK = "the mask is empty: paint over the area to change"


def prepare(
    mask: Image.Image, *, invert_mask: bool, mask_grow: int, mask_blur: int, between: Callable[[], None] = lambda: None
) -> tuple[Image.Image, Image.Image]:
    """(hard, feathered) for a drawn or uploaded mask: the hard one goes to the model, the feathered
    one only to the final composite. The runner and the UI's preview both call this, so they agree.
    `between` is called between the steps (each can take a second on a 48 MP mask): the runner stops
    there when the job was cancelled."""
    hard = threshold(mask)
    between()
    if invert_mask:
        hard = invert(hard)
        between()
    hard = grow(hard, mask_grow)
    between()
    return hard, feather(hard, mask_blur)


def threshold(mask: Image.Image, level: int = 128) -> Image.Image:
    """>= level -> 255, else 0."""
    if not 1 <= level <= 255:
        raise ValueError(f"threshold level must be 1..255, got {level}")
    mask = as_l(mask)
    box = mask.getbbox()
    if box is None:
        return mask  # all zeros already
    lut = [0] * level + [255] * (256 - level)
    return _with_region(mask, box, np.asarray(mask.crop(box).point(lut)))


def grow(mask: Image.Image, pixels: int) -> Image.Image:
    """Dilate (pixels > 0) or erode (pixels < 0) a hard mask by a disc of that radius; 0 = unchanged.

    The image border does not erode: a mask painted up to the edge still reaches it.
    """
    if pixels == 0:
        return mask
    mask = as_l(mask)
    reach = abs(pixels)
    region_box = _around_mask(mask, reach + 1)
    if region_box is None:
        return mask
    left, top, right, bottom = region_box
    inside = np.asarray(mask.crop(region_box)) >= 128
    # A pixel is within `reach` of the mask exactly when the Euclidean distance transform says so: the same
    # result as an elliptical kernel, at a cost that does not grow with the radius.
    if pixels > 0:
        distance = cv2.distanceTransform(np.where(inside, 0, 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        grown = distance <= reach
    else:
        distance = cv2.distanceTransform(np.where(inside, 255, 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        grown = distance > reach
    return _with_region(mask, region_box, np.where(grown, np.uint8(255), np.uint8(0)))


def feather(mask: Image.Image, radius: int) -> Image.Image:
    """Gaussian blur (sigma = radius) for the final composite only; 0 = unchanged. The model gets the hard mask."""
    if radius < 0:
        raise ValueError(f"feather radius must be >= 0, got {radius}")
    if radius == 0:
        return mask
    mask = as_l(mask)
    half_kernel = math.ceil(3 * radius)
    # With this margin the reflected border of the crop only ever mirrors zeros, so the crop blurs exactly as
    # the whole mask would (including reflection at the image's own edges).
    region_box = _around_mask(mask, 2 * half_kernel + 1)
    if region_box is None:
        return mask
    region = np.asarray(mask.crop(region_box))
    size = 2 * half_kernel + 1
    blurred = cv2.GaussianBlur(region, (size, size), sigmaX=radius, sigmaY=radius, borderType=cv2.BORDER_REFLECT_101)
    return _with_region(mask, region_box, blurred)


def invert(mask: Image.Image) -> Image.Image:
    return ImageOps.invert(as_l(mask))


def require_not_empty(mask: Image.Image) -> None:
    if bounding_box(mask) is None:
        raise BadMaskError(EMPTY_MASK)


def bounding_box(mask: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom), right/bottom exclusive, of the nonzero pixels; None for an empty mask."""
    return as_l(mask).getbbox()


def as_l(mask: Image.Image) -> Image.Image:
    return mask if mask.mode == "L" else mask.convert("L")


def _around_mask(mask: Image.Image, margin: int) -> tuple[int, int, int, int] | None:
    """The mask's bounding box grown by `margin` on each side, clamped to the image; None if the mask is empty."""
    box = mask.getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    return (
        max(0, left - margin),
        max(0, top - margin),
        min(mask.width, right + margin),
        min(mask.height, bottom + margin),
    )


def _with_region(mask: Image.Image, box: tuple[int, int, int, int], region: np.ndarray) -> Image.Image:
    """A mask of `mask`'s size that is `region` inside `box` and 0 elsewhere (callers' boxes hold all of the mask)."""
    result = Image.new("L", mask.size, 0)
    result.paste(Image.fromarray(region), box[:2])
    return result
