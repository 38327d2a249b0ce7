"""AppTest for working in volume: the Batch page's Prompts tab, the History page, the Compare grid,
and restoring parameters from a dropped PNG on Generate."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest

from core.prompt_batch import batch_zip
from core.provenance import read_parameters
from tests.app_helpers import button, open_page, run_until, texts

pytestmark = pytest.mark.usefixtures("fresh_app")


def test_prompts_tab_runs_prompts_times_seeds_and_zips_them_with_a_manifest(tiny_catalogue):
    at = open_page("3_Batch.py")
    at.text_area(key="prompts.text").set_value("a red cube\n\na blue ball\n")
    at.number_input(key="prompts.seeds").set_value(2)
    at.toggle(key="prompts.tiny-sd.seed-random").set_value(False)
    at.run()
    at.number_input(key="prompts.tiny-sd.seed").set_value(40)
    at.run()
    assert "2 prompts × 2 seeds = 4 images." in texts(at.caption)
    button(at, "Run prompts").click()
    at = run_until(at.run(), lambda at: at.get("download_button"), what="the prompts batch to finish")
    run = at.session_state["prompts.run"]
    assert [name for name, _ in run.results()] == ["001-40", "001-41", "003-40", "003-41"]
    assert read_parameters(dict(run.results())["003-41"])["prompt"] == "a blue ball"
    assert [widget.label for widget in at.get("download_button")] == ["Download 4 images + manifest.csv (ZIP)"]
    archive = zipfile.ZipFile(io.BytesIO(batch_zip(run.items, dict(run.problems()))))  # what the button holds
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [row["seed"] for row in manifest] == ["40", "41", "40", "41"]
