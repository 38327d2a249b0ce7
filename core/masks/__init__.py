"""Masks: PIL "L", 255 = repaint, 0 = keep.

Built from an uploaded mask file (`files`) or from the drawable canvas (`canvas`: its vector objects, rasterised at
the image's full resolution); shaped by threshold, grow/shrink, feather and invert (`ops`). Cropping the region a
model works on and pasting its output back lives in `core.region`.

Cost follows the mask, not the image: everything past building the mask works on the mask's bounding box plus the
margin an operation can reach, so a small mask on a 4096x4096 photo stays cheap.
"""

from core.masks.canvas import mask_from_canvas
from core.masks.files import mask_from_image
from core.masks.ops import bounding_box, feather, grow, invert, prepare, require_not_empty, threshold

__all__ = [
    "bounding_box",
    "feather",
    "grow",
    "invert",
    "mask_from_canvas",
    "mask_from_image",
    "prepare",
    "require_not_empty",
    "threshold",
]
