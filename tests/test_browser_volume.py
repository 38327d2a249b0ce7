"""Working in volume in a real browser (`streamlit run Home.py`, Debian's Chromium, the tiny offline
pipeline): a prompts batch of 3 prompts x 2 seeds downloads as a ZIP of 6 PNGs with a manifest, and a
2x2 comparison grid re-run comes entirely from the result store. The finished pages are looked at at a
laptop's and a phone's size (no sideways overflow; screenshots in the test's folder, and with
STUDIO_UPDATE_SCREENSHOTS=1 in docs/screenshots/)."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.provenance import read_parameters
from tests.app_server import headless_chromium, running_app, settled

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
LAPTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}
PATIENCE_MS = 300_000  # a shared 2-core machine under load; a fresh CI machine takes a fraction


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_catalogue_file) -> Iterator[str]:
    # Torch runs the tiny UNet: converting it to OpenVINO first (tests/test_openvino.py covers that) only adds minutes here.
    env = {"STUDIO_MODELS_FILE": str(tiny_catalogue_file), "STUDIO_OPENVINO": "0"}
    with running_app(tmp_path_factory.mktemp("volume-server"), env) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as chromium:
        yield chromium


def screenshots(page, tmp_path: Path, name: str, anchor) -> None:
    """The page at a laptop's and a phone's size, scrolled to `anchor`; nothing may overflow sideways."""
    for viewport in (LAPTOP, PHONE):
        page.set_viewport_size(viewport)
        anchor.scroll_into_view_if_needed()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} overflows sideways by {overflow} px at {viewport['width']} px"
        path = tmp_path / f"{name}-{viewport['width']}.png"
        page.screenshot(path=str(path))
        if os.environ.get("STUDIO_UPDATE_SCREENSHOTS") == "1":
            page.screenshot(path=str(ROOT / "docs" / "screenshots" / path.name))
    page.set_viewport_size(LAPTOP)


def fill(locator, text: str) -> None:
    locator.fill(text)
    locator.press("Tab")  # Streamlit takes a text value when the field loses focus
    settled(locator.page)


def test_prompts_batch_of_3_prompts_times_2_seeds_downloads_6_pngs_and_a_manifest(app_url, browser, tmp_path):
    page = browser.new_page(viewport=LAPTOP, accept_downloads=True)
    try:
        page.goto(f"{app_url}/Batch")
        page.get_by_role("tab", name="Prompts").click()
        fill(page.get_by_label("Prompts, one per line"), "a red cube\na blue ball\na green cone")
        fill(page.get_by_label("Seeds per prompt"), "2")
        page.get_by_text("3 prompts × 2 seeds = 6 images.").wait_for(timeout=30_000)
        page.get_by_role("button", name="Run prompts").click()
        download_button = page.get_by_role("button", name="Download 6 images + manifest.csv (ZIP)")
        download_button.wait_for(timeout=PATIENCE_MS)
        screenshots(page, tmp_path, "batch-prompts", download_button)
        with page.expect_download() as download:
            download_button.click()
        archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    finally:
        page.close()
    names = sorted(archive.namelist())
    assert len(names) == 7 and names[-1] == "manifest.csv"
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [row["prompt"] for row in manifest] == ["a red cube"] * 2 + ["a blue ball"] * 2 + ["a green cone"] * 2
    assert all(row["status"] == "done" for row in manifest)
    for row in manifest:
        assert read_parameters(archive.read(row["file"]))["seed"] == int(row["seed"])


def test_a_2x2_grid_rerun_comes_entirely_from_the_store(app_url, browser, tmp_path):
    page = browser.new_page(viewport=LAPTOP, accept_downloads=True)
    try:
        page.goto(f"{app_url}/Compare")
        page.get_by_text("X/Y grid").click()
        settled(page)
        fill(page.get_by_label("Prompt", exact=True), "a lighthouse at dusk")
        values = page.get_by_role("textbox", name="Values")
        fill(values.nth(0), "1, 2")  # X: seed (the default axis)
        fill(values.nth(1), "1-2")  # Y: steps
        page.get_by_role("button", name="Run grid").click()
        page.get_by_role("button", name="Download the grid (PNG)").wait_for(timeout=PATIENCE_MS)
        assert page.get_by_text("from the store (nothing ran)").count() == 0
        screenshots(page, tmp_path, "compare-grid", page.get_by_role("button", name="Download the grid (PNG)"))
        with page.expect_download() as download:
            page.get_by_role("button", name="Download the grid (PNG)").click()
        grid_png = Path(download.value.path()).read_bytes()
        assert read_parameters(grid_png)["grid_x_values"] == [1, 2]
        settled(page)
        page.get_by_role("button", name="Run grid").click()
        page.get_by_text("from the store (nothing ran)").nth(3).wait_for(timeout=PATIENCE_MS)
        assert page.get_by_text("from the store (nothing ran)").count() == 4
    finally:
        page.close()
