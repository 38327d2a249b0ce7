"""Driving the app's pages in Streamlit's AppTest as a user would: open a page, click, wait, draw on the canvas.

The canvas is drawn by putting strokes (in image pixels, as the mask editor's component sends them) where
the page keeps them, session_state["<key>.strokes"]. Tests using these also take the `fresh_app` fixture
(tests/conftest.py), so each page reads services built for that test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.keys import digest_bytes
from core.ui.mask_editor import strokes_key

ROOT = Path(__file__).resolve().parents[1]

# What the mask editor sends for a few drawings on a photo of at least 400x300 (image pixels).
STROKES = {
    "freedraw": [{"tool": "brush", "size": 40, "points": [[150 + 14 * i, 150 + 5 * i] for i in range(16)]}],
    "rect": [{"tool": "rect", "size": 0, "points": [[100, 120], [260, 220]]}],
    "eraser": [
        {"tool": "brush", "size": 50, "points": [[100, 200], [250, 200], [400, 200]]},
        {"tool": "eraser", "size": 30, "points": [[250, 120], [250, 280]]},
    ],
}


def open_page(page: str | None = None) -> AppTest:
    """The app as `streamlit run Home.py` serves it, switched to `pages/<page>`."""
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=120)
    if page is not None:
        at.switch_page(f"pages/{page}")
    return at.run()


def run_until(at: AppTest, done: Callable[[AppTest], bool], *, timeout: float = 120, what: str) -> AppTest:
    """Reruns the page until `done(at)`; the page must not raise meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not at.exception, [exception.value for exception in at.exception]
        if done(at):
            return at
        time.sleep(0.1)
        at.run()
    raise AssertionError(f"timed out waiting for {what}")


def button(at: AppTest, label: str):
    matches = [widget for widget in at.button if widget.label == label]
    assert matches, f"no button {label!r}; have {[widget.label for widget in at.button]}"
    return matches[0]


def click(at: AppTest, label: str) -> AppTest:
    button(at, label).click()
    return at.run()


def texts(elements) -> list[str]:
    return [str(element.value) for element in elements]


def upload_and_draw(at: AppTest, photo: bytes, strokes: list, *, key: str = "inpaint") -> AppTest:
    """Uploads `photo` on the page's `<key>.upload` and paints `strokes` on its canvas."""
    at.file_uploader(key=f"{key}.upload").set_value(("photo.png", photo, "image/png"))
    at.run()
    at.session_state[strokes_key(key)] = {"doc": digest_bytes(photo), "epoch": 1, "strokes": strokes}
    return at.run()


def open_inpaint_to_replace(photo: bytes, strokes: list, *, model: str | None = None) -> AppTest:
    """The Inpaint page with `photo` uploaded, drawn on and switched to "Replace or regenerate" (with `model`)."""
    at = upload_and_draw(open_page("2_Inpaint.py"), photo, strokes)
    at.radio(key="inpaint.mode").set_value("Replace or regenerate")
    at.run()
    if model is not None:
        at.selectbox(key="inpaint.replace-model").set_value(model)
        at.run()
    return at


def fix_seed(at: AppTest, prefix: str, seed: int) -> AppTest:
    """Turns `<prefix>.seed-random` off, which shows the `<prefix>.seed` input, and sets it to `seed`."""
    at.toggle(key=f"{prefix}.seed-random").set_value(False)
    at.run()
    at.number_input(key=f"{prefix}.seed").set_value(seed)
    return at.run()
