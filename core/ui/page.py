"""The frame every page shares: config, a compact top (so the work sits in view on a 1280x800 screen and
on a phone), the session kept across page switches and reloads, and the title."""

from __future__ import annotations

import streamlit as st

from core.ui.access import require_access
from core.ui.session import keep_session, save_session

# Streamlit's default top padding (6rem) pushes Run and the result below the fold on a laptop. A column
# holding a container keyed "sticky-..." stays in view while the page scrolls (wide screens only: on a
# phone the columns stack and it simply follows the controls).
COMPACT = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.75rem; padding-bottom: 3rem; }
[data-testid="stMainBlockContainer"] h1 { padding-top: 0.25rem; padding-bottom: 0.25rem; }
@media (min-width: 641px) {
  [data-testid="stColumn"]:has(> div > div > [class*="st-key-sticky-"]),
  [data-testid="stColumn"]:has([class*="st-key-sticky-"]) { position: sticky; top: 4rem; align-self: flex-start; }
}
</style>"""


def page_start(title: str, icon: str, caption: str | None = None, *, page_title: str | None = None) -> None:
    st.set_page_config(page_title=page_title or f"{title} · Canvas Studio", page_icon=icon, layout="wide")
    require_access()  # before anything of the page runs, when the operator protects the pages
    st.html(COMPACT)
    keep_session()
    st.title(title)
    if caption:
        st.caption(caption)


def page_end() -> None:
    """Save the page's work for a reload (only when it changed)."""
    save_session()


__all__ = ["page_end", "page_start"]
