"""Bring what just appeared into view, once: a job's progress panel that Run added under itself lands
below the fold on a phone (the columns stack and Run sits low on the page), so the panel scrolls the
page until its bottom edge is on screen. It does nothing when the panel is already in view (a laptop's
sticky Run column), and nothing again for the same token, so a user who scrolls away stays there.
"""

from __future__ import annotations

import streamlit as st

# A zero-height marker that scrolls itself into view ("nearest": the least movement that shows it). The
# module-level set outlives the fragment reruns that redraw the panel every poll, so each token scrolls once.
_JS = """
const revealed = new Set();
export default function ({ data, parentElement }) {
  let marker = parentElement.__revealMarker;
  if (!marker) {
    marker = parentElement.__revealMarker = document.createElement("div");
    marker.setAttribute("data-testid", "reveal-marker");
    marker.style.height = "1px";
    marker.style.scrollMarginBottom = "16px"; // a little room under the panel, not flush with the edge
    parentElement.appendChild(marker);
  }
  if (!data || !data.token || revealed.has(data.token)) return;
  revealed.add(data.token);
  requestAnimationFrame(() => marker.scrollIntoView({ block: "nearest" }));
}
"""
_component = None


def reveal(token: str, *, key: str) -> None:
    """Scroll the page so this point (put it right under what should be seen) is on screen, once per token."""
    global _component
    if _component is None:
        _component = st.components.v2.component("canvas_studio.reveal", js=_JS)
    _component(key=key, data={"token": token})


__all__ = ["reveal"]
