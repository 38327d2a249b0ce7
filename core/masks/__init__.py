"""Masks: PIL "L", 255 = repaint, 0 = keep.

Built from an uploaded mask file (`files`) or from the mask editor's strokes (`strokes`: brush, eraser and rectangle
in photo pixels, rasterised at the image's full resolution); shaped by threshold, grow/shrink, feather and invert
(`ops`). Cropping the region a
model works on and pasting its output back lives in `core.region`.

Cost follows the mask, not the image: everything past building the mask works on the mask's bounding box plus the
margin an operation can reach, so a small mask on a 4096x4096 photo stays cheap.
"""

from core.masks.files import mask_from_image
from core.masks.ops import bounding_box, feather, grow, invert, prepare, require_not_empty, threshold
from core.masks.strokes import mask_from_strokes

__all__ = [
    "bounding_box",
    "feather",
    "grow",
    "invert",
    "mask_from_image",
    "mask_from_strokes",
    "prepare",
    "require_not_empty",
    "threshold",
]
