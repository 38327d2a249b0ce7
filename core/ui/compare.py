"""Before/after: two images side by side, and a wipe slider over one view of both.

A plain st.slider and a PIL composite (no extra component): left of the line is "before", right
of it is "after". Inside a fragment, moving the slider reruns only this widget.
"""

from __future__ import annotations

import streamlit as st
from PIL import Image, ImageDraw

DISPLAY_WIDTH = 768  # the wipe view is drawn at most this wide; the downloads stay full size


def wipe(before: Image.Image, after: Image.Image, position: float, *, width: int = DISPLAY_WIDTH) -> Image.Image:
    """`before` left of `position` (0..1 of the width), `after` right of it, both scaled to a
    common display size (after's aspect follows before's), with a thin divider."""
    scale = min(1.0, width / before.width)
    size = (max(1, round(before.width * scale)), max(1, round(before.height * scale)))
    left = before.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    right = after.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    split = round(min(max(position, 0.0), 1.0) * size[0])
    view = right.copy()
    view.paste(left.crop((0, 0, split, size[1])), (0, 0))
    if 0 < split < size[0]:
        draw = ImageDraw.Draw(view)
        draw.line([(split, 0), (split, size[1])], fill=(255, 255, 255), width=max(1, size[0] // 256))
    return view


def before_after(
    before: Image.Image,
    after: Image.Image,
    *,
    key: str,
    labels: tuple[str, str] = ("Before", "After"),
    side_by_side: bool = True,
) -> None:
    """The two images side by side and the wipe slider, in two tabs; only the slider when the
    page already shows both images (`side_by_side=False`)."""
    if not side_by_side:
        _wipe_view(before, after, key, labels)
        return
    both, slider = st.tabs(["Side by side", "Before/after slider"])
    with both:
        left, right = st.columns(2)
        left.image(before, caption=labels[0], width="stretch")
        right.image(after, caption=labels[1], width="stretch")
    with slider:
        _wipe_view(before, after, key, labels)


@st.fragment
def _wipe_view(before: Image.Image, after: Image.Image, key: str, labels: tuple[str, str]) -> None:
    position = st.slider(
        f"Compare: {labels[0]} ◀ ▶ {labels[1]}",
        min_value=0,
        max_value=100,
        value=50,
        format="%d%%",
        key=f"{key}.wipe",
        help="Drag to move the divider: left of it is the first image, right of it the second.",
    )
    st.image(wipe(before, after, position / 100), caption=f"{labels[0]} | {labels[1]}", width="content")


__all__ = ["before_after", "wipe"]
