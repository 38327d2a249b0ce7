"""The mask editor: the drawable canvas over the photo, its tools, and a live preview of the mask.

The canvas shows a downscaled copy of the photo; core.masks rasterises the drawing's vector
objects at the photo's full resolution. The component has no eraser, so the eraser here is a
freehand stroke in a colour of its own that `is_eraser` recognises; core.masks only ever learns
"this object erases", never a colour.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image

from core import masks
from core.errors import BadMaskError

log = logging.getLogger(__name__)

BRUSH_STROKE = "rgba(255, 0, 0, 0.6)"
BRUSH_FILL = "rgba(255, 0, 0, 0.35)"
ERASER_STROKE = "rgba(255, 255, 255, 0.8)"
TOOLS = {
    "Brush": ("freedraw", BRUSH_STROKE),
    "Eraser": ("freedraw", ERASER_STROKE),
    "Rectangle": ("rect", BRUSH_STROKE),
}
CANVAS_MAX = (640, 560)  # the canvas's largest width and height on the page, in CSS pixels
PREVIEW_WIDTH = 640
OVERLAY_COLOUR = (255, 40, 90)


def is_eraser(obj: dict) -> bool:
    """Whether a canvas object erases: the eraser tool's strokes, recognised by their colour."""
    return obj.get("stroke") == ERASER_STROKE and str(obj.get("type", "")).lower() == "path"


def canvas_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """The canvas's size: the image's aspect, as large as fits CANVAS_MAX (small images scaled up)."""
    width, height = image_size
    scale = min(CANVAS_MAX[0] / width, CANVAS_MAX[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def canvas_key(key: str, image_digest: str) -> str:
    """The component's widget key: a new image gets a fresh, empty canvas."""
    return f"{key}.canvas.{image_digest[:16]}"


@dataclass(frozen=True)
class MaskOptions:
    mask_blur: int = 4
    mask_grow: int = 0
    invert_mask: bool = False


def effective_masks(drawn: Image.Image, options: MaskOptions) -> tuple[Image.Image, Image.Image]:
    """(hard, feathered): what the runner will use for `drawn` with these options (the same
    core.masks steps, in the runner's order), for the preview."""
    return masks.prepare(
        drawn, invert_mask=options.invert_mask, mask_grow=options.mask_grow, mask_blur=options.mask_blur
    )


def overlay(image: Image.Image, mask: Image.Image, width: int = PREVIEW_WIDTH) -> Image.Image:
    """The image, downscaled to `width`, tinted where `mask` is (its feathered edge faintly)."""
    scale = min(1.0, width / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    base = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR)).astype(np.float32)
    weight = np.asarray(mask.resize(size, Image.Resampling.BILINEAR)).astype(np.float32)[:, :, None] / 255 * 0.6
    tinted = base * (1 - weight) + np.array(OVERLAY_COLOUR, np.float32) * weight
    return Image.fromarray(tinted.round().astype(np.uint8))


@st.cache_data(show_spinner=False, max_entries=16)
def _background_jpeg(digest: str, size: tuple[int, int], _image: Image.Image) -> bytes:
    """The canvas background: the photo at canvas size, as JPEG bytes (small to send, and the
    component re-encodes nothing when the bytes are unchanged)."""
    shown = _image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    shown.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


@dataclass(frozen=True)
class Drawing:
    mask: Image.Image  # "L" 0/255 at the image's full size, as drawn (before the mask options)
    objects: int  # how many objects are on the canvas


def mask_editor(image: Image.Image, image_digest: str, *, key: str) -> Drawing:
    """Tools, the canvas over `image`, and the drawn mask at full resolution."""
    from streamlit_drawable_canvas import st_canvas  # registers its component: only inside a Streamlit run

    tool_column, size_column = st.columns([3, 2])
    tool = tool_column.radio("Tool", list(TOOLS), horizontal=True, key=f"{key}.tool")
    brush = size_column.slider("Brush size", 5, 120, 40, step=5, key=f"{key}.brush", help="In screen pixels.")
    mode, stroke = TOOLS[tool]
    width, height = canvas_size(image.size)
    st.caption("Paint over what to change. Undo, redo and reset are in the canvas toolbar (hover its top edge).")
    nothing = Drawing(Image.new("L", image.size, 0), 0)
    state_key = canvas_key(key, image_digest)
    try:
        result = st_canvas(
            fill_color=BRUSH_FILL,
            stroke_width=brush,
            stroke_color=stroke,
            background_image=_background_jpeg(image_digest, (width, height), image),
            background_image_fit="contain",
            width=width,
            height=height,
            drawing_mode=mode,
            key=state_key,
        )
    except (AttributeError, KeyError, TypeError, ValueError):  # the component could not even read its state
        log.warning("unreadable canvas state dropped", exc_info=True)
        st.session_state.pop(state_key, None)
        st.error("The canvas drawing was malformed and has been cleared; draw the mask again.")
        return nothing
    drawing = result.json_data or {}
    try:
        if not isinstance(drawing, dict):
            raise BadMaskError("the canvas drawing is malformed; clear it and draw the mask again")
        mask = _drawn_mask(drawing, result.background_fit, image.size, (width, height), key)
    except BadMaskError as error:
        st.error(error.message)
        return nothing
    return Drawing(mask, len(drawing.get("objects") or []))


def _drawn_mask(
    drawing: dict, fit: dict | None, image_size: tuple[int, int], size: tuple[int, int], key: str
) -> Image.Image:
    """The full-resolution mask, rasterised again only when the drawing changed."""
    identity = hashlib.blake2b(
        json.dumps([drawing.get("objects"), fit, image_size, size], sort_keys=True, default=str).encode(),
        digest_size=16,
    ).hexdigest()
    memo = st.session_state.get(f"{key}.mask-memo")
    if memo is not None and memo[0] == identity:
        return memo[1]
    mask = masks.mask_from_canvas(drawing, image_size, canvas_size=size, background_fit=fit, is_eraser=is_eraser)
    st.session_state[f"{key}.mask-memo"] = (identity, mask)
    return mask


def mask_preview(image: Image.Image, drawing: Drawing, options: MaskOptions, *, key: str) -> Image.Image | None:
    """Show the mask the run will use over the image; returns the preview, or None when nothing
    is painted. Computed again only when the image, the drawing or the options changed."""
    memo = st.session_state.get(f"{key}.preview-memo")
    if memo is not None and memo[0] is image and memo[1] is drawing.mask and memo[2] == options:
        shown = memo[3]
    else:
        _hard, feathered = effective_masks(drawing.mask, options)
        shown = None if feathered.getbbox() is None else overlay(image, feathered)
        st.session_state[f"{key}.preview-memo"] = (image, drawing.mask, options, shown)
    if shown is None:
        st.info("Nothing painted yet: the mask preview appears here.", icon=":material/brush:")
        return None
    st.image(shown, caption="Mask preview (full resolution, shown scaled)", width="stretch")
    return shown


__all__ = [
    "BRUSH_STROKE",
    "ERASER_STROKE",
    "TOOLS",
    "Drawing",
    "MaskOptions",
    "canvas_key",
    "canvas_size",
    "effective_masks",
    "is_eraser",
    "mask_editor",
    "mask_preview",
    "overlay",
]
