"""Click to select: points (include / exclude) and a box on the photo become a mask from a Segment
Anything model (core/engines/sam.py), shown at once over the photo and combined with the brush
strokes (added to them or cut out of them); the page's grow and feather then apply as to any mask.

The component (select_canvas.js) shows a picture Python draws (photo, selection, clicks) and reports
clicks in the photo's pixels; the clicks live in session_state under `<key>.selection`, per photo.
The photo's image embedding is computed on the first click and kept by its digest, so each further
click runs only the small decoder.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from core.errors import StudioError
from core.requests import SegmentRequest
from core.ui import state
from core.ui.mask_editor import Drawing
from core.ui.uploads import LoadedImage

log = logging.getLogger(__name__)

INCLUDE, EXCLUDE = "Include", "Exclude"
ADD, SUBTRACT = "Add to the mask", "Cut from the mask"
SHOWN_SIDE = 1024  # the picture the component shows, longest side
SELECTION_TINT = (40, 120, 255)
_JS = Path(__file__).with_name("select_canvas.js").read_text(encoding="utf-8")
_component = None


def _selector():
    global _component
    if _component is None:
        _component = st.components.v2.component("canvas_studio.click_select", js=_JS)
    return _component


def selection_key(key: str) -> str:
    return f"{key}.selection"


def _prompts(key: str, digest: str) -> dict:
    """This photo's clicks and box ({"doc", "points": [[x, y, include]...], "box": [l, t, r, b] | None})."""
    stored = st.session_state.get(selection_key(key))
    if not stored or stored.get("doc") != digest:
        stored = {"doc": digest, "points": [], "box": None}
        st.session_state[selection_key(key)] = stored
    return stored


def _take(key: str, include: bool) -> None:
    """The component's trigger (a click or a box), added to the prompts before the page reruns."""
    event = st.session_state.get(f"{key}.selector") or {}
    prompts = st.session_state.get(selection_key(key))
    if prompts is None:
        return
    click, box = event.get("click"), event.get("box")
    if isinstance(click, dict) and {"x", "y"} <= set(click):
        prompts["points"] = [
            *prompts["points"],
            [float(click["x"]), float(click["y"]), bool(click.get("include", include))],
        ]
    elif isinstance(box, dict) and {"left", "top", "right", "bottom"} <= set(box):
        prompts["box"] = [float(box[name]) for name in ("left", "top", "right", "bottom")]


def _undo(key: str) -> None:
    prompts = st.session_state.get(selection_key(key))
    if prompts and prompts["points"]:
        prompts["points"] = prompts["points"][:-1]
    elif prompts:
        prompts["box"] = None


def _clear(key: str) -> None:
    prompts = st.session_state.get(selection_key(key))
    if prompts:
        prompts["points"], prompts["box"] = [], None


def shown_picture(image: Image.Image, selection: Image.Image | None, points: list, box: list | None) -> Image.Image:
    """The photo at most SHOWN_SIDE a side, the selection tinted, include clicks green, exclude red."""
    scale = min(1.0, SHOWN_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    shown = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    if selection is not None:
        weight = np.asarray(selection.resize(size, Image.Resampling.BILINEAR), np.float32)[..., None] / 255 * 0.5
        pixels = np.asarray(shown, np.float32) * (1 - weight) + np.array(SELECTION_TINT, np.float32) * weight
        shown = Image.fromarray(pixels.round().astype(np.uint8))
    draw = ImageDraw.Draw(shown)
    radius = max(4, round(max(size) / 120))
    if box is not None:
        draw.rectangle([value * scale for value in box], outline=(45, 127, 249), width=max(2, radius // 2))
    for x, y, include in points:
        cx, cy = x * scale, y * scale
        colour = (30, 200, 90) if include else (230, 40, 40)
        draw.ellipse(
            [cx - radius, cy - radius, cx + radius, cy + radius], fill=colour, outline=(255, 255, 255), width=2
        )
    return shown


def _data_url(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _selection(source: LoadedImage, model: str, prompts: dict, key: str) -> Image.Image | None:
    """The selected mask for these prompts (memoised: reruns without a new click cost nothing)."""
    if not prompts["points"] and prompts["box"] is None:
        return None
    identity = (source.digest, model, repr(prompts["points"]), repr(prompts["box"]))
    memo = st.session_state.get(f"{key}.selection-memo")
    if memo is not None and memo[0] == identity:
        return memo[1]
    request = SegmentRequest(
        model=model,
        image=source.image,
        points=tuple((x, y, bool(include)) for x, y, include in prompts["points"]),
        box=None if prompts["box"] is None else tuple(prompts["box"]),
    )
    started = time.perf_counter()
    mask = state.studio().segment(request, image_digest_hint=source.digest)
    st.session_state[f"{key}.selection-seconds"] = time.perf_counter() - started
    st.session_state[f"{key}.selection-memo"] = (identity, mask)
    return mask


def combined(drawn: Image.Image, selection: Image.Image | None, how: str) -> Image.Image:
    """The painted mask with the selection added to it, or cut out of it."""
    if selection is None:
        return drawn
    painted, selected = np.asarray(drawn) > 0, np.asarray(selection) > 0
    result = painted | selected if how == ADD else painted & ~selected
    return Image.fromarray(np.where(result, 255, 0).astype(np.uint8))


def click_select(source: LoadedImage, drawing: Drawing, *, key: str) -> Drawing:
    """The "Select by clicking" panel; returns the drawing with the selection combined into its mask."""
    studio = state.studio()
    specs = studio.catalogue.for_task("segment")
    prompts = _prompts(key, source.digest)
    active = bool(prompts["points"] or prompts["box"])
    with st.expander("Select by clicking", icon=":material/ads_click:", expanded=active):
        ready = [spec for spec in specs if spec.availability().ready]
        if not ready:
            if specs:
                st.info(f"Click to select needs {specs[0].name}: {specs[0].availability().detail}")
            return drawing
        spec = ready[0]
        clicks_column, how_column = st.columns(2)
        clicks = clicks_column.segmented_control(
            "A click", [INCLUDE, EXCLUDE], default=INCLUDE, key=f"{key}.select-clicks",
            help="Include: part of the object. Exclude: not part of it (a right click always excludes).",
        )  # fmt: skip
        how = how_column.segmented_control("The selection", [ADD, SUBTRACT], default=ADD, key=f"{key}.select-how")
        include = clicks != EXCLUDE
        try:
            selection = _selection(source, spec.id, prompts, key)
        except StudioError as error:
            st.error(error.message)
            selection = None
        _selector()(
            key=f"{key}.selector",
            data={
                "image": _data_url(shown_picture(source.image, selection, prompts["points"], prompts["box"])),
                "width": source.image.width,
                "height": source.image.height,
                "include": include,
            },
            on_click_change=lambda: _take(key, include),
            on_box_change=lambda: _take(key, include),
        )
        undo_column, clear_column, info_column = st.columns([1, 1, 3])
        undo_column.button("Undo click", key=f"{key}.select-undo", on_click=_undo, args=(key,), disabled=not active)
        clear_column.button("Clear", key=f"{key}.select-clear", on_click=_clear, args=(key,), disabled=not active)
        seconds = st.session_state.get(f"{key}.selection-seconds")
        info_column.caption(
            f"{spec.name} · click on the object, right-click what is not part of it, drag for a box"
            + (f" · last selection {seconds:.2f} s" if selection is not None and seconds is not None else "")
        )
    if selection is None:
        return drawing
    return Drawing(
        combined(drawing.mask, selection, how), drawing.objects + len(prompts["points"]) + (prompts["box"] is not None)
    )


__all__ = ["ADD", "SUBTRACT", "click_select", "combined", "selection_key", "shown_picture"]
