"""The mask editor: our canvas component over the photo, its tools, and a live preview of the mask.

The component (mask_canvas.js, inline, no build step) fits the photo to its column at any width,
shows the mask as a translucent colour, and keeps what the user paints as strokes in IMAGE pixels;
core.masks.strokes rasterises them at full resolution. The strokes live in session_state under
`<key>.strokes` (not in the widget), so they survive page switches and can be restored after a
reload; the component adopts them whenever their `epoch` changes (a fresh mount, a restore, a clear).

Given a SelectionLayer (click to select, core/ui/select.py), the canvas also offers its Select tool, draws
the selected mask over the photo in its own colour with the clicks that made it, and reports new clicks
and boxes, in photo pixels, to the layer's `on_pick`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from core import masks
from core.errors import BadMaskError
from core.masks.strokes import mask_from_strokes
from core.requests import InpaintRequest, default
from core.ui.media import encoded, media_url

log = logging.getLogger(__name__)

BACKGROUND_MAX_SIDE = 2048  # the photo the canvas shows (zoomable to about this detail), in pixels
PREVIEW_WIDTH = 640
OVERLAY_COLOUR = (255, 40, 90)  # the same colour as the canvas's mask (mask_canvas.js MASK_RGB)
SELECTION_COLOUR = (40, 120, 255)  # a selection from clicks, apart from the painted mask
SELECTION_MAX_SIDE = 1024  # the selection layer the canvas shows (the mask itself keeps the photo's size)
_JS = (Path(__file__).with_name("mask_canvas.js")).read_text(encoding="utf-8")


@dataclass(frozen=True)
class MaskOptions:
    mask_blur: int = default(InpaintRequest, "mask_blur")
    mask_grow: int = default(InpaintRequest, "mask_grow")
    invert_mask: bool = default(InpaintRequest, "invert_mask")


@dataclass(frozen=True)
class PhotoScale:
    """Brush, feather and grow defaults and ranges for one photo, relative to its size, in its pixels: a 40 px
    brush is a fat line on a 512 px photo and a hairline on a 4000 px one."""

    brush: int
    max_brush: int
    feather: int
    max_feather: int
    max_grow: int

    @classmethod
    def of(cls, size: tuple[int, int]) -> PhotoScale:
        long = max(size)
        return cls(
            brush=max(4, round(long / 25)),
            max_brush=max(16, round(long / 3)),
            feather=max(2, round(long / 200)),
            max_feather=max(16, round(long / 16)),
            max_grow=max(16, round(long / 8)),
        )


def feather_grow_ranges(scale: PhotoScale, *, key: str) -> dict[str, tuple[str, int, int]]:
    """{request field: (widget key, low, high)} of the feather and grow sliders for a photo of this scale. The
    keys carry the range, so a photo of another size gets fresh sliders with its own defaults; a restore
    (History's "edit on Inpaint") sets the same keys."""
    return {
        "mask_blur": (f"{key}.blur.{scale.max_feather}", 0, scale.max_feather),
        "mask_grow": (f"{key}.grow.{scale.max_grow}", -scale.max_grow, scale.max_grow),
    }


def mask_options(scale: PhotoScale, *, key: str) -> MaskOptions:
    """Feather and grow (side by side, in the photo's pixels) and Invert: the options every page's mask takes."""
    ranges = feather_grow_ranges(scale, key=key)
    blur_column, grow_column = st.columns(2)
    blur_key, low, high = ranges["mask_blur"]
    mask_blur = blur_column.slider(
        "Feather (px)",
        low,
        high,
        scale.feather,
        key=blur_key,
        help="Soft edge of the blend, in photo pixels (the default follows the photo's size).",
        persist_state="session",
    )
    grow_key, low, high = ranges["mask_grow"]
    mask_grow = grow_column.slider(
        "Grow / shrink (px)",
        low,
        high,
        0,
        key=grow_key,
        help="Enlarge (+) or shrink (-) the mask, in photo pixels.",
        persist_state="session",
    )
    invert_mask = st.checkbox(
        "Invert (change everything except what is painted)", key=f"{key}.invert", persist_state="session"
    )
    return MaskOptions(mask_blur=mask_blur, mask_grow=mask_grow, invert_mask=invert_mask)


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


@st.cache_data(show_spinner=False, max_entries=8)
def _background_jpeg(digest: str, _image: Image.Image) -> bytes:
    """The photo the canvas shows: at most BACKGROUND_MAX_SIDE a side."""
    return encoded(_image.convert("RGB"), BACKGROUND_MAX_SIDE, quality=85)


_component = None


def _canvas():
    """The component, registered on first use (inside a Streamlit run only)."""
    global _component
    if _component is None:
        _component = st.components.v2.component("canvas_studio.mask_canvas", js=_JS)
    return _component


@dataclass(frozen=True)
class Drawing:
    mask: Image.Image  # "L" 0/255 at the image's full size, as drawn (before the mask options)
    objects: int  # how many strokes are on the canvas


@dataclass(frozen=True)
class SelectionLayer:
    """What the canvas draws over the photo for click to select, and where its clicks go."""

    mask: Image.Image | None  # the selected mask ("L", the photo's size), None before the first click
    points: list  # [[x, y, include], ...] in photo pixels
    box: list | None  # [left, top, right, bottom] in photo pixels
    on_pick: Callable[[dict], None]  # gets {"click": {x, y, include}} or {"box": {left, top, right, bottom}}


def _selection_png(mask: Image.Image) -> bytes:
    """The selection as a picture: its colour where selected, transparent elsewhere (the canvas adds the
    translucency), at most SELECTION_MAX_SIDE a side."""
    alpha = mask.copy()
    alpha.thumbnail((SELECTION_MAX_SIDE, SELECTION_MAX_SIDE), Image.Resampling.BILINEAR)
    layer = Image.new("RGBA", alpha.size, (*SELECTION_COLOUR, 0))
    layer.putalpha(alpha)
    buffer = io.BytesIO()
    layer.save(buffer, format="PNG")
    return buffer.getvalue()


def _selection_data(selection: SelectionLayer, key: str) -> dict:
    url = None
    if selection.mask is not None:
        memo = st.session_state.get(f"{key}.selection-layer-memo")
        if memo is None or memo[0] is not selection.mask:  # encoded once per selection
            memo = (selection.mask, _selection_png(selection.mask))
            st.session_state[f"{key}.selection-layer-memo"] = memo
        url = media_url(memo[1], coordinates=f"mask-editor-{key}-selection")
    return {"image": url, "points": [list(point) for point in selection.points], "box": selection.box}


def strokes_key(key: str) -> str:
    return f"{key}.strokes"


def stored_strokes(key: str, image_digest: str) -> list:
    """The strokes painted on this photo in this session ([] for another photo)."""
    stored = st.session_state.get(strokes_key(key))
    return list(stored["strokes"]) if stored and stored.get("doc") == image_digest else []


def set_strokes(key: str, image_digest: str, strokes: list) -> None:
    """Replace the strokes (a restore after a reload, a clear); the canvas adopts them on its next render."""
    stored = st.session_state.get(strokes_key(key)) or {}
    st.session_state[strokes_key(key)] = {
        "doc": image_digest,
        "epoch": int(stored.get("epoch", 0)) + 1,
        "strokes": list(strokes),
    }


def mask_editor(
    image: Image.Image, image_digest: str, *, key: str, selection: SelectionLayer | None = None
) -> Drawing:
    """The canvas over `image` and the drawn mask at full resolution; with `selection`, also the Select tool
    and the selected mask over the photo (the returned drawing is the painted mask only)."""
    stored = st.session_state.get(strokes_key(key))
    if not stored or stored.get("doc") != image_digest:
        set_strokes(key, image_digest, [])
        stored = st.session_state[strokes_key(key)]
    scale = PhotoScale.of(image.size)
    picks = {}
    if selection is not None:
        canvas_key = f"{key}.canvas"

        def picked() -> None:
            selection.on_pick(dict(st.session_state.get(canvas_key) or {}))

        picks = {"on_click_change": picked, "on_box_change": picked}
    result = _canvas()(
        key=f"{key}.canvas",
        data={
            "image": media_url(_background_jpeg(image_digest, image), coordinates=f"mask-editor-{key}"),
            "width": image.width,
            "height": image.height,
            "strokes": stored["strokes"],
            "epoch": stored["epoch"],
            "brush": scale.brush,
            "maxBrush": scale.max_brush,
            "selection": None if selection is None else _selection_data(selection, key),
        },
        on_strokes_change=lambda: None,
        **picks,
    )
    sent = result.get("strokes")
    if isinstance(sent, dict) and sent.get("epoch") == stored["epoch"] and isinstance(sent.get("strokes"), list):
        stored = {**stored, "strokes": sent["strokes"]}
        st.session_state[strokes_key(key)] = stored
    try:
        mask = _drawn_mask(stored["strokes"], image.size, key)
    except BadMaskError as error:
        st.error(error.message)
        return Drawing(Image.new("L", image.size, 0), 0)
    return Drawing(mask, len(stored["strokes"]))


def _drawn_mask(strokes: list, image_size: tuple[int, int], key: str) -> Image.Image:
    """The full-resolution mask, rasterised again only when the strokes changed."""
    identity = hashlib.blake2b(json.dumps([strokes, image_size]).encode(), digest_size=16).hexdigest()
    memo = st.session_state.get(f"{key}.mask-memo")
    if memo is not None and memo[0] == identity:
        return memo[1]
    mask = mask_from_strokes(strokes, image_size)
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
    "Drawing",
    "MaskOptions",
    "PhotoScale",
    "SelectionLayer",
    "effective_masks",
    "feather_grow_ranges",
    "mask_editor",
    "mask_options",
    "mask_preview",
    "overlay",
    "set_strokes",
    "stored_strokes",
    "strokes_key",
]
