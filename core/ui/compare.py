"""Before/after: one view of two pictures with a divider the user drags, entirely in the browser.

Our own small component (before_after.js, inline, no build step): both pictures fill the same box, so
they line up exactly, and dragging costs no server round trip.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from PIL import Image

from core.ui.media import encoded, media_url

DISPLAY_MAX_SIDE = 1280  # the pictures are sent at most this large; the downloads stay full size
_JS = Path(__file__).with_name("before_after.js").read_text(encoding="utf-8")
_component = None


def before_after(
    before: Image.Image,
    after: Image.Image,
    *,
    key: str,
    labels: tuple[str, str] = ("Before", "After"),
    side_by_side: bool = False,
    reveal: bool = False,
) -> None:
    """The wipe view of `before` (left of the divider) and `after`; with `side_by_side`, also a tab
    with the two pictures next to each other. `reveal` scrolls it into view (a result that just
    arrived below the fold, as on a phone)."""
    global _component
    if _component is None:
        _component = st.components.v2.component("canvas_studio.before_after", js=_JS)
    if side_by_side:
        wipe_tab, both = st.tabs(["Before/after", "Side by side"])
        with both:
            left, right = st.columns(2)
            left.image(before, caption=labels[0], width="stretch")
            right.image(after, caption=labels[1], width="stretch")
        container = wipe_tab
    else:
        container = st.container()
    memo = st.session_state.get(f"{key}.media-memo")
    if memo is None or memo[0] is not before or memo[1] is not after:  # encoded once per pair of pictures
        memo = (before, after, encoded(before, DISPLAY_MAX_SIDE), encoded(after, DISPLAY_MAX_SIDE))
        st.session_state[f"{key}.media-memo"] = memo
    with container:
        _component(
            key=key,
            data={
                "before": media_url(memo[2], coordinates=f"{key}.before"),
                "after": media_url(memo[3], coordinates=f"{key}.after"),
                "labels": list(labels),
                "reveal": reveal,
                "width": before.width,
                "height": before.height,
            },
        )
        st.caption(f"Drag across the picture: {labels[0]} on the left of the line, {labels[1]} on the right.")


__all__ = ["before_after"]
