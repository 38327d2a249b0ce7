"""End to end in a real browser (Debian's Chromium, headless) at a laptop's and a phone's size: extend
a photo to 16:9 from the Inpaint page's Extend mode, and click on a photo to select an object (tiny
MobileSAM stand-in, tests/tiny_sam.py), see the selection over the photo and remove it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Error as PlaywrightError

from tests.app_server import canvas_pixel, headless_chromium, photo_on_inpaint, running_app, settled
from tests.tiny_sam import export_tiny_sam, write_sam_catalogue

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LAPTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("extend-select-server")
    encoder, _ = export_tiny_sam(work / "sam")
    catalogue = write_sam_catalogue(work / "models.toml", encoder)
    with running_app(work, {"STUDIO_MODELS_FILE": str(catalogue)}) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as chromium:
        yield chromium


def scene() -> Image.Image:
    pixels = np.full((600, 1500, 3), 20, np.uint8)
    pixels[150:450, 150:600] = 240
    pixels[100:500, 900:1400] = 128
    return Image.fromarray(pixels)


def scrolled_to(page, locator) -> None:
    """Scroll `locator` into view, again if a rerun replaced the element meanwhile."""
    for attempt in range(10):
        try:
            locator.scroll_into_view_if_needed(timeout=5_000)
            return
        except PlaywrightError:
            if attempt == 9:
                raise
            page.wait_for_timeout(500)


def download(page, button) -> Image.Image:
    with page.expect_download(timeout=60_000) as done:
        button.click()
    image = Image.open(io.BytesIO(Path(done.value.path()).read_bytes()))
    image.load()
    return image


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280x800", "390x844"])
def test_extend_to_16_9_in_the_browser(app_url, browser, viewport, coffee, tmp_path):
    photo = coffee.resize((400, 300))
    photo.save(tmp_path / "cup.png")
    page = browser.new_page(viewport=viewport, accept_downloads=True)
    try:
        page.goto(f"{app_url}/Inpaint")
        page.locator("input[type=file]").set_input_files(str(tmp_path / "cup.png"))
        page.get_by_text("Extend the canvas", exact=True).click()
        page.get_by_text("To an aspect ratio").click()
        page.get_by_text("New frame: 533×300").wait_for(timeout=30_000)  # 16:9 is the first choice, centred
        extend = page.get_by_role("button", name="Extend", exact=True)
        scrolled_to(page, extend)
        extend.click()
        result = download(page, page.get_by_role("button", name="Download PNG"))
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        page.close()
    assert result.size == (533, 300)
    left = (533 - 400) // 2
    assert np.array_equal(np.asarray(result.convert("RGB"))[:, left : left + 400], np.asarray(photo))


def test_clicking_on_the_photo_selects_the_object_and_remove_changes_only_it(app_url, browser, tmp_path):
    photo = scene()
    photo.save(tmp_path / "scene.png")
    page = browser.new_page(viewport=LAPTOP, accept_downloads=True)
    try:
        canvas = photo_on_inpaint(page, app_url, tmp_path / "scene.png")
        settled(page)
        page.get_by_role("button", name="Select", exact=True).click()
        box = canvas.bounding_box()
        inside, outside = (box["width"] * 0.25, box["height"] * 0.6), (box["width"] * 0.75, box["height"] * 0.6)
        white, grey = np.array(canvas_pixel(canvas, *inside), dtype=int), np.array(canvas_pixel(canvas, *outside), dtype=int)
        page.mouse.click(box["x"] + box["width"] * 300 / 1500, box["y"] + box["height"] * 250 / 600)
        page.get_by_text("last selection").wait_for(timeout=60_000)
        for _ in range(50):  # the selection is drawn on the canvas, over the photo, as soon as it arrives
            tinted = np.array(canvas_pixel(canvas, *inside), dtype=int)
            if tinted[2] > tinted[0] + 60:
                break
            page.wait_for_timeout(200)
        assert tinted[2] > tinted[0] + 60 and white[2] < white[0] + 10, (white, tinted)  # blue over the white block
        assert np.abs(np.subtract(canvas_pixel(canvas, *outside), grey)).sum() < 10  # the grey block is not selected
        settled(page)
        page.reload()  # the session keeps the clicks: the selection comes back on the canvas
        canvas.wait_for(timeout=60_000)
        page.get_by_text("last selection").wait_for(timeout=60_000)
        for _ in range(50):
            again = np.array(canvas_pixel(canvas, *inside), dtype=int)
            if again[2] > again[0] + 60:
                break
            page.wait_for_timeout(200)
        assert again[2] > again[0] + 60, again
        settled(page)
        run = page.get_by_role("button", name="Run", exact=True)
        scrolled_to(page, run)
        run.click()
        result = download(page, page.get_by_role("button", name="Download PNG"))
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        page.close()
    changed = np.any(np.asarray(result.convert("RGB")) != np.asarray(photo), axis=2)
    assert changed[200:400, 200:550].mean() > 0.5  # the white block was removed
    assert not changed[:, 800:].any()  # the grey block, far from the selection, is untouched
