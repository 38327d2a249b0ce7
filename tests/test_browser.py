"""End to end in a real browser: `streamlit run Home.py` on a free loopback port, headless Chromium
(Debian's, never a downloaded one) at a laptop's and a phone's size. The photo must fit the mask
editor whole; a stroke along its right edge, an eraser stroke and Ctrl+Z change the mask as shown;
Run keeps the run in view, and the downloaded result differs from the photo only inside the stroke,
up to its right edge.

STUDIO_UPDATE_SCREENSHOTS=1 also writes docs/screenshots/inpaint.png (the README's picture).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.ui.mask_editor import PhotoScale
from tests.app_server import canvas_pixel, headless_chromium, photo_on_inpaint, running_app, settled

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
LAPTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    with running_app(tmp_path_factory.mktemp("browser-server")) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as chromium:
        yield chromium


def in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + min(box["height"], 40) <= size["height"]


def drag(page, box, points: list[tuple[float, float]]) -> None:
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
    page.mouse.up()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280x800", "390x844"])
def test_the_editor_fits_and_a_stroke_at_the_right_edge_reaches_the_result(
    app_url, browser, viewport, astronaut, tmp_path
):
    photo_path = tmp_path / "astronaut.png"
    astronaut.save(photo_path)
    page = browser.new_page(viewport=viewport, accept_downloads=True)
    try:
        canvas = photo_on_inpaint(page, app_url, photo_path)
        box = canvas.bounding_box()
        # The whole photo is on screen: the canvas has the photo's aspect and lies within the window's width.
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        assert abs(box["width"] / box["height"] - astronaut.width / astronaut.height) < 0.02
        scale = astronaut.width / box["width"]  # image pixels per CSS pixel

        # A vertical stroke hugging the right edge, then an eraser stroke across its middle.
        edge = box["width"] - 2
        drag(page, box, [(edge, box["height"] * 0.2), (edge, box["height"] * 0.8)])
        page.wait_for_timeout(500)
        probe = (edge - 1, box["height"] * 0.5)
        painted = canvas_pixel(canvas, *probe)
        page.get_by_role("button", name="Eraser").click()
        drag(page, box, [(edge - 40, box["height"] * 0.5), (box["width"] - 1, box["height"] * 0.5)])
        page.wait_for_timeout(500)
        erased = canvas_pixel(canvas, *probe)
        assert np.abs(np.subtract(painted, erased)).sum() > 30, (painted, erased)  # the eraser removed the tint
        page.keyboard.press("Control+z")
        page.wait_for_timeout(500)
        assert canvas_pixel(canvas, *probe) == painted  # Ctrl+Z brought the erased part back

        run = page.get_by_role("button", name="Run", exact=True)
        run.scroll_into_view_if_needed()
        run.click()
        page.wait_for_timeout(300)
        assert in_viewport(page, run), "Run (and the progress under it) left the screen"
        result = page.get_by_role("button", name="Download PNG")
        result.wait_for(timeout=90_000)
        page.wait_for_timeout(1000)  # the result scrolls itself into view when it arrives below the fold
        assert in_viewport(page, page.locator("[data-testid=before-after]")), "the result is off screen"
        if os.environ.get("STUDIO_UPDATE_SCREENSHOTS") and viewport is LAPTOP:
            target = ROOT / "docs" / "screenshots" / "inpaint.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target))
        with page.expect_download(timeout=30_000) as download:
            result.click()
        after = Image.open(io.BytesIO(Path(download.value.path()).read_bytes()))
        after.load()
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        page.close()

    assert after.size == astronaut.size and "canvas-studio" in after.info  # full size, parameters inside
    changed = np.any(np.asarray(astronaut) != np.asarray(after), axis=2)
    brush = PhotoScale.of(astronaut.size).brush
    reach = brush / 2 + 2 * PhotoScale.of(astronaut.size).feather + 3 * scale  # brush, feather, pointer rounding
    columns = np.nonzero(changed.any(axis=0))[0]
    rows = np.nonzero(changed.any(axis=1))[0]
    assert changed[:, -3:].sum() > 50, "the right edge of the photo did not change"
    assert columns.min() >= astronaut.width - 2 * scale - reach, "pixels left of the stroke changed"
    assert rows.min() >= 0.2 * astronaut.height - reach and rows.max() <= 0.8 * astronaut.height + reach


def test_the_mask_settings_and_result_survive_a_page_switch_and_a_reload(app_url, browser, coffee, tmp_path):
    photo_path = tmp_path / "coffee.png"
    coffee.save(photo_path)
    page = browser.new_page(viewport=LAPTOP)
    try:
        canvas = photo_on_inpaint(page, app_url, photo_path)
        box = canvas.bounding_box()
        probe = (box["width"] * 0.5, box["height"] * 0.5)
        photo_colour = canvas_pixel(canvas, *probe)
        drag(page, box, [(box["width"] * 0.3, probe[1]), (box["width"] * 0.7, probe[1])])
        page.wait_for_timeout(1000)
        painted = canvas_pixel(canvas, *probe)
        assert np.abs(np.subtract(painted, photo_colour)).sum() > 30
        page.get_by_text("Mask options").click()
        page.get_by_text("Whole image").click()
        page.wait_for_timeout(500)
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("button", name="Download PNG").wait_for(timeout=90_000)

        def still_there(what: str) -> None:
            canvas.wait_for(timeout=60_000)
            page.get_by_role("button", name="Download PNG").wait_for(timeout=30_000)
            page.wait_for_timeout(1000)
            assert canvas_pixel(canvas, *probe) == painted, f"the mask is gone after {what}"
            page.get_by_text("Mask options").click()
            assert page.get_by_role("checkbox", name="Whole image").is_checked(), f"a setting is lost after {what}"
            page.get_by_text("Mask options").click()

        page.get_by_role("link", name="Home").click()
        page.get_by_role("heading", name="Canvas Studio").wait_for(timeout=30_000)
        page.get_by_role("link", name="Inpaint").first.click()
        still_there("a page switch")
        assert "session=" in page.url
        page.reload()
        still_there("a reload")
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        page.close()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280x800", "390x844"])
def test_the_progress_panel_is_in_view_while_a_long_run_works(app_url, browser, viewport, astronaut, tmp_path):
    """A removal that takes seconds (a 3000 px photo, most of it under a rectangle): right after Run, the
    progress panel shows where the user is looking, not above or below the screen (on a phone Run sits low
    on the page and the panel appears under it: the page scrolls it into view)."""
    photo_path = tmp_path / "big.png"
    astronaut.resize((3000, 3000)).save(photo_path)
    page = browser.new_page(viewport=viewport)
    try:
        canvas = photo_on_inpaint(page, app_url, photo_path)
        page.get_by_role("button", name="Rectangle").click()
        box = canvas.bounding_box()
        drag(page, box, [(box["width"] * 0.1, box["height"] * 0.1), (box["width"] * 0.9, box["height"] * 0.9)])
        # The rectangle reruns the page: a click that lands mid-rerun can hit a Run button being replaced.
        settled(page)
        run = page.get_by_role("button", name="Run", exact=True)
        run.scroll_into_view_if_needed()
        run.click()
        progress = page.locator("[data-testid=stProgress]").first
        progress.wait_for(timeout=60_000)
        cancel = page.get_by_role("button", name="Cancel")
        for _ in range(10):  # the page scrolls (once, instantly) as soon as the panel is laid out
            if in_viewport(page, progress) and in_viewport(page, cancel):
                break
            page.wait_for_timeout(100)
        assert in_viewport(page, progress), "the progress panel is off screen"
        assert in_viewport(page, cancel), "the progress panel's Cancel is off screen"
        assert in_viewport(page, run), "Run left the screen"
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        page.close()
