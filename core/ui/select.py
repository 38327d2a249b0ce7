"""Click to select: clicks (include / exclude) and a box on the photo, made with the mask editor's Select
tool, become a mask from a Segment Anything model (core/engines/sam.py). The selection shows at once on
the editor's canvas over the photo, in its own colour, and is combined with the brush strokes (added to
them or cut out of them); the page's grow and feather then apply as to any mask.

The clicks live in session_state under `<key>.selection`, per photo. The photo's image embedding is
computed on the first click and kept by its digest, so each further click runs only the small decoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import streamlit as st
from PIL import Image

from core.catalogue import ModelSpec
from core.errors import StudioError
from core.requests import SegmentRequest
from core.ui import state
from core.ui.mask_editor import Drawing, SelectionLayer
from core.ui.uploads import LoadedImage

ADD, SUBTRACT = "Add to mask", "Cut from mask"


@dataclass(frozen=True)
class Selection:
    """The clicks on one photo and the mask they select."""

    segmenter: ModelSpec | None  # the ready segmentation model (None: none is ready)
    missing: str | None  # how to get one, when the catalogue has one that is not downloaded
    prompts: dict  # {"doc", "points": [[x, y, include]...], "box": [l, t, r, b] | None}
    mask: Image.Image | None  # "L" at the photo's size; None before the first click or after an error
    error: str | None
    layer: SelectionLayer | None  # what the canvas draws and where its clicks go; None without a segmenter

    @property
    def active(self) -> bool:
        return bool(self.prompts["points"] or self.prompts["box"])


def selection_key(key: str) -> str:
    return f"{key}.selection"


def _prompts(key: str, digest: str) -> dict:
    stored = st.session_state.get(selection_key(key))
    if not stored or stored.get("doc") != digest:
        stored = {"doc": digest, "points": [], "box": None}
        st.session_state[selection_key(key)] = stored
    return stored


def _take(key: str, event: dict) -> None:
    """A click or a box from the canvas, added to the prompts before the page reruns."""
    prompts = st.session_state.get(selection_key(key))
    if prompts is None:
        return
    click, box = event.get("click"), event.get("box")
    if isinstance(click, dict) and {"x", "y"} <= set(click):
        prompts["points"] = [*prompts["points"], [float(click["x"]), float(click["y"]), bool(click.get("include", True))]]
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


def _selected(source: LoadedImage, model: str, prompts: dict, key: str) -> Image.Image | None:
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


def current_selection(source: LoadedImage, *, key: str) -> Selection:
    """The clicks made so far on this photo and the mask they select; call before the mask editor (its
    canvas draws the selection)."""
    specs = state.studio().catalogue.for_task("segment")
    prompts = _prompts(key, source.digest)
    ready = [spec for spec in specs if spec.availability().ready]
    if not ready:
        missing = f"Click to select needs {specs[0].name}: {specs[0].availability().detail}" if specs else None
        return Selection(None, missing, prompts, None, None, None)
    mask = error = None
    try:
        mask = _selected(source, ready[0].id, prompts, key)
    except StudioError as failure:
        error = failure.message
    layer = SelectionLayer(mask, prompts["points"], prompts["box"], partial(_take, key))
    return Selection(ready[0], None, prompts, mask, error, layer)


def combined(drawn: Image.Image, selection: Image.Image | None, how: str) -> Image.Image:
    """The painted mask with the selection added to it, or cut out of it."""
    if selection is None:
        return drawn
    painted, selected = np.asarray(drawn) > 0, np.asarray(selection) > 0
    result = painted | selected if how == ADD else painted & ~selected
    return Image.fromarray(np.where(result, 255, 0).astype(np.uint8))


def click_select(selection: Selection, drawing: Drawing, *, key: str) -> Drawing:
    """Under the editor: how the selection joins the painted mask, Undo click and Clear (or how to get a
    segmentation model); returns the drawing with the selection combined into its mask."""
    if selection.segmenter is None:
        if selection.missing:
            with st.expander("Select by clicking", icon=":material/ads_click:"):
                st.info(selection.missing)
        return drawing
    if selection.error:
        st.error(selection.error)
    if not selection.active:
        return drawing
    with st.container(horizontal=True, vertical_alignment="bottom", key=f"{key}-selection"):
        how = st.segmented_control(
            "The selection (blue)", [ADD, SUBTRACT], default=ADD, key=f"{key}.select-how",
            help="Added to what is painted, or cut out of it; feather and grow then apply to the whole mask.",
        )  # fmt: skip
        st.button("Undo click", key=f"{key}.select-undo", on_click=_undo, args=(key,))
        st.button("Clear selection", key=f"{key}.select-clear", on_click=_clear, args=(key,))
    seconds = st.session_state.get(f"{key}.selection-seconds")
    st.caption(
        f"{selection.segmenter.name} · Select tool: click the object, right-click (or Exclude) what is not part"
        " of it, drag a box"
        + (f" · last selection {seconds:.2f} s" if selection.mask is not None and seconds is not None else "")
    )
    if selection.mask is None:
        return drawing
    prompts = selection.prompts
    return Drawing(
        combined(drawing.mask, selection.mask, how or ADD),
        drawing.objects + len(prompts["points"]) + (prompts["box"] is not None),
    )


__all__ = ["ADD", "SUBTRACT", "Selection", "click_select", "combined", "current_selection", "selection_key"]
