"""AppTest for working in volume: the Batch page's Prompts tab, the History page, the Compare grid,
and restoring parameters from a dropped PNG on Generate."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from PIL import Image, PngImagePlugin

from core import history, services
from core.prompt_batch import batch_zip
from core.provenance import read_parameters
from core.requests import GenerateRequest, InpaintRequest
from core.ui.mask_editor import PhotoScale
from tests.app_helpers import STROKES, button, open_page, run_until, texts, upload_and_draw

pytestmark = pytest.mark.usefixtures("fresh_app")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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


# -- History ------------------------------------------------------------------------------------------


def make_history(coffee) -> tuple[str, str]:
    """A generated result (tiny pipeline) and an edit (OpenCV) in the store; their keys."""
    studio = services.studio()
    made = studio.generate(
        GenerateRequest(model="tiny-sd", prompt="a red fox", negative_prompt="blurry", seed=11, width=64, height=128)
    )
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (250, 150, 330, 230))
    edited = studio.inpaint(InpaintRequest(model="opencv-telea", image=coffee, mask=mask))
    return made.key, edited.key


def test_history_lists_filters_opens_and_restores_generate(tiny_catalogue, coffee):
    generated, edited = make_history(coffee)
    at = open_page("5_History.py")
    assert "2 of 2 results, newest first." in texts(at.caption)
    captions = [text for text in texts(at.caption) if "·" in text]
    assert captions[0].startswith("(no prompt) · opencv-telea · ") and "region" in captions[0]  # newest first
    assert captions[1].startswith("a red fox · tiny-sd · 64×128")
    at.text_input(key="history.text").set_value("fox").run()
    assert "1 of 2 results, newest first." in texts(at.caption)
    at.text_input(key="history.text").set_value("").run()
    at.multiselect(key="history.tasks").set_value(["inpaint"]).run()
    assert "1 of 2 results, newest first." in texts(at.caption)
    at.multiselect(key="history.tasks").set_value([]).run()
    at.button(key=f"history.open.{generated}").click().run()
    assert any('"seed": 11' in code.value for code in at.code)
    at.button(key="history.to-generate").click().run()
    assert not at.exception
    state = at.session_state
    assert state["generate.prompt"] == "a red fox" and state["generate.negative"] == "blurry"
    assert state["generate.model"] == "tiny-sd" and state["generate.size.tiny-sd"] == "Custom · 64×128"
    assert state["generate.tiny-sd.seed"] == 11 and state["generate.tiny-sd.seed-random"] is False
    assert at.selectbox(key="generate.size.tiny-sd").value == "Custom · 64×128"  # the Generate page drew it


def test_history_delete_removes_the_result_and_its_thumbnail(tiny_catalogue, coffee):
    generated, edited = make_history(coffee)
    at = open_page("5_History.py")
    store = services.studio().store
    thumbnail = store.root / edited[:2] / edited / "thumb-256.webp"
    assert thumbnail.is_file()  # made when the grid showed it
    at.button(key=f"history.open.{edited}").click().run()
    at.button(key="history.delete").click().run()
    assert not at.exception
    assert "1 of 1 results, newest first." in texts(at.caption)
    assert edited not in store and not thumbnail.exists() and generated in store


def test_a_dropped_a1111_png_restores_the_generate_settings(tiny_catalogue):
    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a castle on a hill\nNegative prompt: fog\nSteps: 3, Sampler: DDIM, CFG scale: 4.5, Seed: 77, Size: 72x64, Model: Tiny SD (test)",
    )
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    at = open_page("1_Generate.py")
    at.file_uploader(key="generate.restore-png").set_value(("castle.png", buffer.getvalue(), "image/png")).run()
    assert not at.exception
    assert at.text_area(key="generate.prompt").value == "a castle on a hill"
    assert at.text_input(key="generate.negative").value == "fog"
    assert at.selectbox(key="generate.size.tiny-sd").value == "Custom · 72×64"
    assert at.slider(key="generate.tiny-sd.steps").value == 3
    assert at.slider(key="generate.tiny-sd.guidance").value == 4.5
    assert at.selectbox(key="generate.tiny-sd.scheduler").value == "DDIM"
    assert at.number_input(key="generate.tiny-sd.seed").value == 77
    assert "Settings restored from castle.png." in texts(at.caption)


def test_a_png_without_parameters_is_refused_on_generate(tiny_catalogue):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    at = open_page("1_Generate.py")
    at.file_uploader(key="generate.restore-png").set_value(("plain.png", buffer.getvalue(), "image/png")).run()
    assert [error.value for error in at.error] == [
        "this PNG carries no generation parameters (no Canvas Studio or A1111 'parameters' text)"
    ]


# -- Compare: X/Y grid ----------------------------------------------------------------------------------


def open_grid(task: str = "Text to image"):
    at = open_page("4_Compare.py")
    at.radio(key="compare.mode").set_value("X/Y grid").run()
    at.radio(key="grid.task").set_value(task).run()
    return at


def test_grid_2x2_runs_through_the_queue_and_a_rerun_is_all_from_the_store(tiny_catalogue):
    at = open_grid()
    at.text_area(key="grid.prompt").set_value("a red cube").run()
    at.selectbox(key="grid.x.kind").set_value("seed").run()
    at.text_input(key="grid.x.values.seed").set_value("1, 2").run()
    at.selectbox(key="grid.y.kind").set_value("steps").run()
    at.text_input(key="grid.y.values.steps").set_value("1-2").run()
    button(at, "Run grid").click()
    at = run_until(at.run(), lambda at: len(at.get("download_button")) == 2, what="the grid to finish")
    grid, run = at.session_state["grid.run"]
    assert [(item.parameters["seed"], item.parameters["num_inference_steps"]) for item in grid.items] == [
        (1, 1),
        (2, 1),
        (1, 2),
        (2, 2),
    ]
    assert sum(caption.endswith(" s") for caption in texts(at.caption)) == 4  # each cell's time
    assert [widget.label for widget in at.get("download_button")] == [
        "Download the grid (PNG)",
        "Download 4 single images (ZIP)",
    ]
    button(at, "Run grid").click()
    at = run_until(
        at.run(),
        lambda at: len(at.get("download_button")) == 2 and at.session_state["grid.run"][1] is not run,
        what="the re-run",
    )
    assert sum(caption == "from the store (nothing ran)" for caption in texts(at.caption)) == 4


def test_grid_refuses_bad_axis_values_with_the_core_message(tiny_catalogue):
    at = open_grid()
    at.text_area(key="grid.prompt").set_value("a red cube").run()
    at.selectbox(key="grid.x.kind").set_value("steps").run()
    at.text_input(key="grid.x.values.steps").set_value("10, many").run()
    button(at, "Run grid").click()
    at.run()
    assert "Steps: 'many' is not a whole number" in [error.value for error in at.error]
    assert "grid.run" not in at.session_state


def test_grid_inpainting_shows_the_change_inside_the_mask_and_none_outside(coffee):
    at = open_grid("Inpainting")
    at.selectbox(key="grid.x.kind").set_value("model").run()
    at.multiselect(key="grid.x.models").set_value(["opencv-telea", "opencv-ns"]).run()
    at.selectbox(key="grid.y.kind").set_value("none").run()
    at = upload_and_draw(at, png_bytes(coffee), STROKES["freedraw"], key="grid")
    button(at, "Run grid").click()
    at = run_until(at.run(), lambda at: len(at.get("download_button")) == 2, what="the grid to finish")
    changes = [text for text in texts(at.caption) if text.startswith("changed ")]
    assert len(changes) == 2 and all(text.endswith("outside the mask: unchanged ✓") for text in changes)


def test_history_sends_an_edit_to_inpaint_with_its_settings(coffee):
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (250, 150, 330, 230))
    edited = services.studio().inpaint(
        InpaintRequest(model="opencv-ns", image=coffee, mask=mask, padding=48, mask_blur=7, mask_grow=-3)
    )
    at = open_page("5_History.py")
    at.button(key=f"history.open.{edited.key}").click().run()
    at.button(key="history.to-inpaint").click().run()
    assert not at.exception
    assert at.radio(key="inpaint.mode").value == "Remove"
    assert at.selectbox(key="inpaint.remove-model").value == "opencv-ns"
    assert at.slider(key="inpaint.padding").value == 48
    (entry,) = history.history(services.studio().store)
    scale = PhotoScale.of(entry.size)  # the feather and grow sliders' keys follow the photo's size
    assert at.slider(key=f"inpaint.blur.{scale.max_feather}").value == 7
    assert at.slider(key=f"inpaint.grow.{scale.max_grow}").value == -3
    assert "Settings restored from the history." in [caption.value for caption in at.caption]
    assert at.session_state["inpaint.source"].image.size == entry.size  # the region the edit changed
