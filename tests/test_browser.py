"""End to end in a real browser: `streamlit run Home.py` on a free loopback port, headless
Chromium (Debian's, never a downloaded one) uploads a photo to the Inpaint page, paints a stroke
with the mouse, runs the OpenCV engine and downloads the result, which must differ from the
photo only inside the stroke.

STUDIO_UPDATE_SCREENSHOTS=1 also writes docs/screenshots/inpaint.png (the README's picture).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.app_server import headless_chromium, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BRUSH = 40  # the page's default brush size, in canvas (CSS) pixels
FEATHER = 4  # the page's default feather, in image pixels


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    with running_app(tmp_path_factory.mktemp("browser-server")) as server:
        yield server.url


@pytest.fixture
def page():
    with headless_chromium() as browser:
        yield browser.new_page(viewport={"width": 1400, "height": 1200}, accept_downloads=True)


def stroke_region(points: list[tuple[float, float]], scale: float, size: tuple[int, int], margin: float) -> np.ndarray:
    """Where a round brush of BRUSH canvas pixels along `points` (canvas coordinates) can have
    changed the image: the stroke in image pixels, widened by `margin` on each side."""
    region = Image.new("L", size, 0)
    draw = ImageDraw.Draw(region)
    radius = BRUSH / 2 * scale + margin
    image_points = [(x * scale, y * scale) for x, y in points]
    draw.line(image_points, fill=255, width=round(2 * radius))
    for x, y in image_points:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return np.asarray(region) > 0


def test_inpaint_in_a_real_browser_changes_only_the_painted_stroke(app_url, page, astronaut, tmp_path):
    photo_path = tmp_path / "astronaut.png"
    astronaut.save(photo_path)
    try:
        page.goto(f"{app_url}/Inpaint")
        page.locator("input[type=file]").set_input_files(str(photo_path))
        canvas = page.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # the background image settles and the component reports its fit
        box = canvas.bounding_box()
        points = [(150 + index * 14, 150 + index * 5) for index in range(16)]
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=3)
        page.mouse.up()
        page.get_by_text("Mask preview (full resolution, shown scaled)").wait_for(timeout=30_000)
        page.get_by_role("button", name="Run").click()
        page.get_by_role("heading", name="Result").wait_for(timeout=90_000)
        if os.environ.get("STUDIO_UPDATE_SCREENSHOTS"):
            target = ROOT / "docs" / "screenshots" / "inpaint.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            page.set_viewport_size({"width": 1400, "height": 1560})
            page.get_by_role("heading", name="Inpaint").scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(target))
        with page.expect_download(timeout=30_000) as download:
            page.get_by_role("button", name="Download PNG").click()
        result = Image.open(io.BytesIO(Path(download.value.path()).read_bytes()))
        result.load()
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise

    assert result.size == astronaut.size and result.mode == "RGB"
    assert "canvas-studio" in result.info  # the download carries its parameters
    before, after = np.asarray(astronaut), np.asarray(result)
    changed = np.any(before != after, axis=2)
    scale = astronaut.width / box["width"]  # canvas CSS pixels -> image pixels
    allowed = stroke_region(points, scale, astronaut.size, margin=FEATHER + 3)
    assert changed.sum() > 1000  # the stroke really was filled in
    assert not np.any(changed & ~allowed), "pixels outside the painted stroke changed"
    core = stroke_region(points, scale, astronaut.size, margin=-BRUSH / 4 * scale)
    assert changed[core].mean() > 0.5  # and most of the stroke's middle did change
