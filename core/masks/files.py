"""Masks from uploaded files: alpha or luminance -> "L" 0/255 at the image's size."""

from __future__ import annotations

import os

from PIL import Image

from core.errors import BadImageError, BadMaskError
from core.images import load_image, normalize_mode
from core.masks.ops import threshold
from core.settings import ImageLimits


def mask_from_image(
    image_or_source: Image.Image | bytes | str | os.PathLike, size: tuple[int, int], limits: ImageLimits = ImageLimits()
) -> Image.Image:
    """An uploaded mask -> "L" 0/255 of `size`.

    A mask with real transparency is read from its alpha channel (any paint counts, so a red, blue or
    semi-transparent stroke on a transparent background is a stroke); an opaque one from its luminance
    (white = repaint, threshold 128).
    """
    if isinstance(image_or_source, Image.Image) and image_or_source.mode in ("L", "1"):
        return _resized_to(threshold(image_or_source.convert("L")), size)  # already a grey mask: no detour via RGB
    try:
        if isinstance(image_or_source, Image.Image):
            image = normalize_mode(image_or_source)
        else:
            image = load_image(image_or_source, limits)
    except BadImageError as error:
        raise BadMaskError(f"unusable mask: {error.message}") from None
    if image.mode == "RGBA":  # normalize_mode keeps RGBA only when some pixel is not opaque
        mask = image.getchannel("A").point(lambda alpha: 255 if alpha > 0 else 0)
    else:
        mask = threshold(image.convert("L"))
    return _resized_to(mask, size)


def _resized_to(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    if mask.size == size:
        return mask
    (mask_width, mask_height), (width, height) = mask.size, size
    if not same_aspect(mask.size, size):
        raise BadMaskError(
            f"the mask is {mask_width}x{mask_height} but the image is {width}x{height}; "
            "a mask must have the image's aspect ratio"
        )
    return mask.resize(size, Image.Resampling.NEAREST)


def same_aspect(scaled: tuple[float, float], size: tuple[float, float]) -> bool:
    """Whether `scaled` is `size` scaled by one factor, give or take 1 % or the pixel that rounding may cost."""
    (scaled_width, scaled_height), (width, height) = scaled, size
    return abs(scaled_width * height / width - scaled_height) <= max(1.0, 0.01 * scaled_height) and abs(
        scaled_height * width / height - scaled_width
    ) <= max(1.0, 0.01 * scaled_width)


def mask_png(mask: Image.Image) -> bytes:
    """A mask as the PNG every entry point returns (greyscale, white = selected; same bytes for the
    same mask, so the CLI and the API agree byte for byte). A mask is long runs of 0 and 255: zlib's
    run-length strategy on unfiltered rows encodes a 12 MP selection in ~25 ms, smaller than PIL's
    default (level 6, ~90 ms)."""
    import cv2
    import numpy as np

    options = [
        cv2.IMWRITE_PNG_COMPRESSION, 1,
        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
        cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
    ]  # fmt: skip
    ok, encoded = cv2.imencode(".png", np.asarray(mask.convert("L")), options)
    if not ok:
        raise RuntimeError("the PNG encoder failed")
    return encoded.tobytes()
