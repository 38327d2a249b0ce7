"""AppTest for every page: each renders, runs real jobs through the shared queue (OpenCV, and the
tiny offline diffusers pipelines), refuses bad input with the core's message, and the job panel
shows progress and cancels.

The canvas is driven by putting strokes where the page keeps them (tests/app_helpers.py STROKES), as the
mask editor's component sends them.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import services
from core.errors import BadImageError
from core.images import load_image
from core.jobs import JobState
from core.masks.strokes import mask_from_strokes
from core.provenance import read_parameters
from core.ui.mask_editor import MaskOptions, effective_masks
from core.ui.sample import watermarked_sample
from tests.app_helpers import (
    STROKES,
    button,
    fix_seed,
    open_inpaint_to_replace,
    open_page,
    run_until,
    texts,
    upload_and_draw,
)

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("fresh_app")  # each test's pages read services built for it


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_mask(strokes: list, photo: Image.Image) -> Image.Image:
    return mask_from_strokes(strokes, photo.size)


def feather(at: AppTest):
    """The Inpaint page's feather slider (its default follows the photo's size)."""
    return next(slider for slider in at.slider if slider.label.startswith("Feather"))


def has_result(at: AppTest) -> bool:
    return bool(at.get("download_button"))


def job_result(at: AppTest, key: str):
    queue = services.queue()
    status = queue.status(at.session_state[key])
    assert status.state is JobState.DONE, status
    return queue.result(status.id)


# -- every page renders --------------------------------------------------------------------------


@pytest.mark.parametrize("page", [None, "1_Generate.py", "2_Inpaint.py", "3_Batch.py", "4_Compare.py"])
def test_every_page_renders_without_an_error_and_loads_no_model(page):
    at = open_page(page)
    assert not at.exception
    assert not at.error
    assert at.title[0].value
    assert services.studio().pool.resident() == []  # opening a page loads nothing


def test_home_lists_runnable_models_the_device_and_links_to_every_page():
    at = open_page()
    assert [link.label for link in at.get("page_link")] == ["Generate", "Inpaint", "Batch", "Compare"]
    markdown = "\n".join(texts(at.markdown))
    assert "OpenCV Telea (offline remove)" in markdown  # built in: ready offline
    assert any("Device:" in caption for caption in texts(at.caption))
    expanders = [expander.label for expander in at.expander]
    assert any("need a download" in label for label in expanders)  # hub models, not downloaded, with hints


# -- Home: the offline "try it" ---------------------------------------------------------------------


def test_home_try_it_removes_the_watermark_and_changes_only_masked_pixels():
    at = open_page()
    button(at, "Remove the watermark").click()
    run_until(at.run(), lambda at: at.get("download_button"), what="the sample result")
    result = job_result(at, "home.try-job")
    marked, watermark = watermarked_sample()
    after = np.asarray(load_image(result.pngs[0]))
    before = np.asarray(marked)
    _, feathered = effective_masks(watermark, MaskOptions(mask_blur=2, mask_grow=3))
    outside = np.asarray(feathered) == 0
    assert np.array_equal(after[outside], before[outside])
    text = np.asarray(watermark) > 0
    assert after[text].mean() < before[text].mean() - 40  # the white letters are gone


def test_home_sends_an_uploaded_photo_to_the_inpaint_page(astronaut):
    at = open_page()
    photo = png_bytes(astronaut)
    at.file_uploader(key="home.upload").set_value(("mine.png", photo, "image/png"))
    at.run()
    button(at, "Open it in Inpaint").click()
    at.run()
    assert at.title[0].value == "Inpaint"
    assert at.session_state["inpaint.source"].data == photo
    assert any("Photo: **mine.png** · 512×512" in expander.label for expander in at.expander)


# -- Inpaint ------------------------------------------------------------------------------------------


def test_inpaint_bad_upload_shows_the_core_message():
    at = open_page("2_Inpaint.py")
    at.file_uploader(key="inpaint.upload").set_value(("holiday.png", b"this is not a picture", "image/png"))
    at.run()
    with pytest.raises(BadImageError) as refused:
        load_image(b"this is not a picture")
    assert any(refused.value.message in error for error in texts(at.error))
    assert not at.exception


def test_inpaint_remove_with_opencv_changes_only_the_painted_pixels(coffee):
    strokes = STROKES["freedraw"]
    photo = png_bytes(coffee)
    at = upload_and_draw(open_page("2_Inpaint.py"), photo, strokes)
    assert any("Mask preview" in caption for image in at.get("image") for caption in image.captions)
    button(at, "Run").click()
    run_until(at.run(), has_result, what="the inpaint result")
    result = job_result(at, "inpaint.job")
    assert read_parameters(result.pngs[0])["model"] == "opencv-telea"
    after = np.asarray(load_image(result.pngs[0]))
    before = np.asarray(coffee)
    _, feathered = effective_masks(drawn_mask(strokes, coffee), MaskOptions(mask_blur=feather(at).value))
    outside = np.asarray(feathered) == 0
    assert np.array_equal(after[outside], before[outside])
    inside = np.asarray(drawn_mask(strokes, coffee)) > 0
    assert np.abs(after[inside].astype(int) - before[inside].astype(int)).mean() > 5
    assert [widget.label for widget in at.get("download_button")] == ["Download PNG"]


def test_inpaint_eraser_strokes_leave_their_pixels_untouched(astronaut):
    strokes = STROKES["eraser"]
    photo = png_bytes(astronaut)
    at = upload_and_draw(open_page("2_Inpaint.py"), photo, strokes)
    feather(at).set_value(0)
    at.run()
    button(at, "Run").click()
    run_until(at.run(), has_result, what="the inpaint result")
    after = np.asarray(load_image(job_result(at, "inpaint.job").pngs[0]))
    mask = np.asarray(drawn_mask(strokes, astronaut))
    painted_only = drawn_mask(strokes[:1], astronaut)
    erased = (np.asarray(painted_only) > 0) & (mask == 0)
    assert erased.sum() > 500  # the eraser crossed the brush stroke
    assert np.array_equal(after[erased], np.asarray(astronaut)[erased])


def test_inpaint_rounds_step_back_and_downloads_are_named_by_source_round_and_model(coffee):
    photo = png_bytes(coffee)
    at = upload_and_draw(open_page("2_Inpaint.py"), photo, STROKES["rect"])
    button(at, "Run").click()
    run_until(at.run(), has_result, what="the inpaint result")
    first = job_result(at, "inpaint.job")
    assert any("photo-round1-opencv-telea.png" in caption for caption in texts(at.caption))
    button(at, "Use as next round").click()
    at.run()
    assert at.session_state["inpaint.source"].data == first.pngs[0]  # round 1 is on the canvas, unpainted
    assert [image.data for image in at.session_state["inpaint.rounds"]] == [photo, first.pngs[0]]
    assert "inpaint.job" not in at.session_state and not at.get("download_button")
    assert button(at, "Round 1 ✓").disabled
    button(at, "Original").click()
    at.run()
    assert at.session_state["inpaint.source"].data == photo  # stepped back; round 1 is still in the strip
    assert len(at.session_state["inpaint.rounds"]) == 2


@pytest.mark.slow
def test_inpaint_replace_with_the_tiny_diffusers_pipeline(tiny_catalogue, coffee):
    strokes = STROKES["freedraw"]
    at = open_inpaint_to_replace(png_bytes(coffee), strokes, model="tiny-sd-inpaint")
    at.text_area(key="inpaint.prompt").set_value("a green apple")
    fix_seed(at, "inpaint.tiny-sd-inpaint", 7)
    button(at, "Run").click()
    run_until(at.run(), has_result, what="the diffusion inpaint result")
    result = job_result(at, "inpaint.job")
    parameters = read_parameters(result.pngs[0])
    assert (parameters["model"], parameters["seed"], parameters["prompt"]) == ("tiny-sd-inpaint", 7, "a green apple")
    after = np.asarray(load_image(result.pngs[0]))
    _, feathered = effective_masks(drawn_mask(strokes, coffee), MaskOptions(mask_blur=feather(at).value))
    outside = np.asarray(feathered) == 0
    assert np.array_equal(after[outside], np.asarray(coffee)[outside])
    assert not np.array_equal(after, np.asarray(coffee))


# -- Generate -----------------------------------------------------------------------------------------


def test_generate_offline_without_models_says_how_to_get_one():
    at = open_page("1_Generate.py")
    assert any("No text-to-image model" in info for info in texts(at.info))
    assert button(at, "Generate").disabled
    assert any("need a download" in expander.label for expander in at.expander)


@pytest.mark.slow
def test_generate_with_the_tiny_pipeline_shows_the_seed_and_a_download_per_image(tiny_catalogue):
    at = open_page("1_Generate.py")
    at.text_area(key="generate.prompt").set_value("a red cube on a table")
    at.slider(key="generate.count.tiny-sd").set_value(2)
    fix_seed(at, "generate.tiny-sd", 1234)
    button(at, "Generate").click()
    run_until(at.run(), lambda at: len(at.get("download_button")) == 2, what="two generated images")
    assert any("Seed **1234**" in markdown for markdown in texts(at.markdown))
    result = job_result(at, "generate.job")
    assert len(result.pngs) == 2
    assert read_parameters(result.pngs[0])["seed"] == 1234
    assert read_parameters(result.pngs[0])["prompt"] == "a red cube on a table"
    # A page switch and back reattaches to the same job: nothing runs again.
    job_id = at.session_state["generate.job"]
    at.switch_page("pages/3_Batch.py").run()
    at.switch_page("pages/1_Generate.py").run()
    assert at.session_state["generate.job"] == job_id
    assert len(at.get("download_button")) == 2
    assert [status.id for status in services.queue().jobs()] == [job_id]
    # "Edit in Inpaint" hands the image to the Inpaint page.
    button(at, "Edit in Inpaint").click()
    at.run()
    assert at.session_state["inpaint.source"].data == result.pngs[0]
    assert at.title[0].value == "Inpaint"


def test_generate_warns_when_the_prompt_is_longer_than_the_text_encoder_reads(tiny_catalogue):
    at = open_page("1_Generate.py")
    at.text_area(key="generate.prompt").set_value("a small house by a lake " * 5)
    at.run()
    assert not at.warning
    at.text_area(key="generate.prompt").set_value("a small house by a lake with tall trees " * 12)
    at.run()
    assert any("tokens" in warning and "estimated" in warning for warning in texts(at.warning))


def test_generate_refuses_an_empty_prompt_with_the_core_message(tiny_catalogue):
    at = open_page("1_Generate.py")
    button(at, "Generate").click()
    at.run()
    assert any("prompt is empty" in error for error in texts(at.error))
    assert "generate.job" not in at.session_state


# -- the job panel: progress and cancel ------------------------------------------------------------------


@pytest.mark.slow
def test_job_panel_shows_steps_and_cancel_stops_the_job(tiny_pipeline_dirs, tmp_path, monkeypatch):
    from tests.tiny_pipelines import write_catalogue

    # 192 px steps take long enough to watch (and cancel) a run in progress.
    monkeypatch.setenv(
        "STUDIO_MODELS_FILE", str(write_catalogue(tmp_path / "models.toml", tiny_pipeline_dirs, working_resolution=192))
    )
    at = open_page("1_Generate.py")
    at.text_area(key="generate.prompt").set_value("a lighthouse")
    at.slider(key="generate.tiny-sd.steps").set_value(150)
    at.run()
    button(at, "Generate").click()

    def progressing(at: AppTest) -> bool:
        return any(
            " · " in bar.proto.text and "step " in bar.proto.text and not bar.proto.text.startswith("step 0/")
            for bar in at.get("progress")
        )

    run_until(at.run(), progressing, what="the progress bar to show steps")
    text = next(bar.proto.text for bar in at.get("progress") if "step " in bar.proto.text)
    step, total = map(int, re.search(r"step (\d+)/(\d+)", text).groups())
    assert 1 <= step < total and total >= 150  # the engine's own count (PNDM adds a warm-up step)
    assert "elapsed" in text and "left" in text
    run_until(
        at,
        lambda at: any("Live preview" in caption for image in at.get("image") for caption in image.captions),
        what="a live preview",
    )
    button(at, "Cancel").click()
    run_until(
        at.run(), lambda at: any("Cancelled" in warning for warning in texts(at.warning)), timeout=60, what="the cancel"
    )
    queue = services.queue()
    status = queue.status(at.session_state["generate.job"])
    assert status.state is JobState.CANCELLED
    assert status.step < 150
    assert status.key not in services.studio().store  # nothing of a cancelled job is cached
    assert not at.get("download_button")


@pytest.mark.slow
def test_job_panel_shows_the_queue_position_and_cancels_a_queued_job(tiny_pipeline_dirs, tmp_path, monkeypatch):
    from core.requests import GenerateRequest
    from tests.tiny_pipelines import write_catalogue

    monkeypatch.setenv(
        "STUDIO_MODELS_FILE", str(write_catalogue(tmp_path / "models.toml", tiny_pipeline_dirs, working_resolution=192))
    )
    queue = services.queue()
    ahead = queue.submit(
        GenerateRequest(model="tiny-sd", prompt="another tab's job", num_inference_steps=150), session="other-tab"
    )
    at = open_page("1_Generate.py")
    at.text_area(key="generate.prompt").set_value("my job")
    at.run()
    button(at, "Generate").click()
    at.run()
    waiting = [bar.proto.text for bar in at.get("progress")]
    assert len(waiting) == 1 and waiting[0].startswith("Waiting: position 1 in the queue · "), waiting
    mine = at.session_state["generate.job"]
    assert queue.status(mine).state is JobState.QUEUED
    button(at, "Cancel").click()
    run_until(at.run(), lambda at: any("Cancelled" in warning for warning in texts(at.warning)), what="the cancel")
    assert queue.status(mine).state is JobState.CANCELLED
    assert queue.status(ahead).state in (JobState.QUEUED, JobState.RUNNING)  # another session's job is not touched
    queue.cancel(ahead)


# -- errors and secrets -------------------------------------------------------------------------------


def test_an_unexpected_error_is_one_friendly_line_and_a_user_error_its_own_message():
    def page():
        from core.errors import BadMaskError
        from core.ui.errors import shown_errors

        with shown_errors():
            raise BadMaskError("the mask is empty: paint over the area to change")
        with shown_errors():
            raise RuntimeError("/secret/path/model.bin exploded")

    at = AppTest.from_function(page).run()
    from core.ui.errors import UNEXPECTED

    assert texts(at.error) == ["the mask is empty: paint over the area to change", UNEXPECTED]
    assert not at.exception


def test_streamlit_secrets_reach_the_environment_without_overriding_it(monkeypatch):
    import os

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("STUDIO_API_KEY", "from-the-environment")
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=60)
    at.secrets["HF_TOKEN"] = "hf_from_secrets"
    at.secrets["api_key"] = "from-secrets"
    try:
        at.run()
        assert os.environ["HF_TOKEN"] == "hf_from_secrets"
        assert os.environ["STUDIO_API_KEY"] == "from-the-environment"
    finally:
        os.environ.pop("HF_TOKEN", None)


# -- Batch ------------------------------------------------------------------------------------------------


def test_batch_one_mask_for_all_runs_every_good_image_and_reports_the_bad_one(coffee):
    at = open_page("3_Batch.py")
    good = png_bytes(coffee)
    flipped = png_bytes(coffee.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (250, 150, 330, 230))
    at.file_uploader(key="batch.images").set_value(
        [
            ("a.png", good, "image/png"),
            ("broken.png", b"\x89PNG\r\n\x1a\n truncated", "image/png"),
            ("b.png", flipped, "image/png"),
        ]
    )
    at.file_uploader(key="batch.mask").set_value(("mask.png", png_bytes(mask), "image/png"))
    at.run()
    with pytest.raises(BadImageError) as refused:
        load_image(b"\x89PNG\r\n\x1a\n truncated")
    why = f"broken.png: {refused.value.message}"
    # checked before Run: the counts are the truth and the bad file says why
    assert any("**3 images** · 2 ready" in text and "1 will not run" in text for text in texts(at.markdown))
    assert list(at.dataframe[0].value["why"]) == [why]
    button(at, "Run batch").click()
    run_until(at.run(), lambda at: at.get("download_button"), what="the batch to finish")
    run = at.session_state["batch.run"]
    results, problems = dict(run.results()), dict(run.problems())
    assert sorted(results) == ["a", "b"]
    assert problems == {"broken": why}
    assert [widget.label for widget in at.get("download_button")] == ["Download 2 results (ZIP)"]
    assert not button(at, "Run batch").disabled  # a batch with a refused item does not leave Run stuck
    at.file_uploader(key="batch.images").set_value([("a.png", good, "image/png")])
    at.run()
    assert "batch.run" not in at.session_state and not at.get("download_button")  # new inputs: old results go
    outside = np.asarray(mask) == 0
    for name, source in (("a", coffee), ("b", coffee.transpose(Image.Transpose.FLIP_LEFT_RIGHT))):
        after = np.asarray(load_image(results[name]))
        assert np.array_equal(after[outside], np.asarray(source)[outside])


def test_batch_zip_with_a_path_traversal_entry_skips_it_and_runs_the_rest(coffee):
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (100, 100, 160, 160))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images/cup.png", png_bytes(coffee))
        archive.writestr("masks/cup.png", png_bytes(mask))
        archive.writestr("../evil.png", png_bytes(coffee))
    at = open_page("3_Batch.py")
    at.radio(key="batch.source").set_value("A ZIP of images and masks")
    at.run()
    at.file_uploader(key="batch.zip").set_value(("batch.zip", buffer.getvalue(), "application/zip"))
    at.run()
    assert any("outside the archive" in caption for caption in texts(at.caption))
    button(at, "Run batch").click()
    run_until(at.run(), lambda at: at.get("download_button"), what="the batch to finish")
    assert [name for name, _ in at.session_state["batch.run"].results()] == ["cup"]


# -- Compare ------------------------------------------------------------------------------------------


def test_compare_two_opencv_models_side_by_side_then_from_the_cache(coffee):
    at = open_page("4_Compare.py")
    at.radio(key="compare.task").set_value("Inpainting")
    at.run()
    upload_and_draw(at, png_bytes(coffee), STROKES["freedraw"], key="compare")
    assert at.multiselect(key="compare.models.inpaint").value == ["opencv-telea", "opencv-ns"]
    button(at, "Run all").click()
    run_until(at.run(), lambda at: len(at.get("download_button")) == 2, what="both models' results")
    first = at.session_state["compare.run"]["jobs"]
    queue = services.queue()
    pixels = [np.asarray(load_image(queue.result(job_id).pngs[0])) for _, job_id in first]
    assert not np.array_equal(pixels[0], pixels[1])  # two methods, two results
    assert not any("From the cache" in caption for caption in texts(at.caption))
    button(at, "Run all").click()
    run_until(
        at.run(),
        lambda at: len(at.get("download_button")) == 2 and at.session_state["compare.run"]["jobs"] != first,
        what="the second run",
    )
    assert sum("From the cache" in caption for caption in texts(at.caption)) == 2
    assert at.selectbox(key="compare.left").value != at.selectbox(key="compare.right").value  # the slider pair


@pytest.mark.slow
def test_compare_text_to_image_uses_one_prompt_and_seed_for_every_model(tiny_pipeline_dirs, tmp_path, monkeypatch):
    folder = json.dumps(str(tiny_pipeline_dirs["txt2img"]))
    common = f'tasks = ["txt2img"]\nengine = "diffusers"\npath = {folder}\nworking_resolution = 64\nmax_side = 512\ndefault_guidance = 7.5\n'
    catalogue = tmp_path / "models.toml"
    catalogue.write_text(
        f'[models.tiny-two]\nname = "Tiny, 2 steps"\ndefault_steps = 2\n{common}\n[models.tiny-four]\nname = "Tiny, 4 steps"\ndefault_steps = 4\n{common}'
    )
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(catalogue))
    at = open_page("4_Compare.py")
    assert at.multiselect(key="compare.models.txt2img").value == ["tiny-two", "tiny-four"]
    at.text_area(key="compare.prompt").set_value("a blue bird")
    fix_seed(at, "compare", 99)
    button(at, "Run all").click()
    run_until(at.run(), lambda at: len(at.get("download_button")) == 2, what="both models' images")
    queue = services.queue()
    parameters = [
        read_parameters(queue.result(job_id).pngs[0]) for _, job_id in at.session_state["compare.run"]["jobs"]
    ]
    assert [(p["model"], p["seed"], p["prompt"], p["num_inference_steps"]) for p in parameters] == [
        ("tiny-two", 99, "a blue bird", 2),
        ("tiny-four", 99, "a blue bird", 4),
    ]
    assert any("seed **99**" in markdown for markdown in texts(at.markdown))


def test_size_presets_are_valid_for_every_text_to_image_model():
    from core.catalogue import Catalogue, ModelSpec
    from core.requests import GenerateRequest
    from core.ui.sizes import ASPECTS, presets

    small = Catalogue(
        [
            ModelSpec(
                id="small", name="Small", tasks=("txt2img",), engine="diffusers", working_resolution=64, max_side=512
            )
        ]
    )
    specs = Catalogue.load().for_task("txt2img") + small.for_task("txt2img")
    assert {spec.id for spec in specs} >= {"sd15", "sdxl-turbo", "small"}
    for spec in specs:
        sizes = presets(spec)
        assert len(sizes) == len(ASPECTS)
        for label, (width, height) in sizes.items():
            GenerateRequest(model=spec.id, prompt="a cat", width=width, height=height).validate(spec)
            aspect = ASPECTS[label.split(" · ")[0]]
            assert abs(width / height - aspect[0] / aspect[1]) < 0.15, (spec.id, label)
        assert sizes[next(iter(sizes))] == (
            spec.working_resolution,
            spec.working_resolution,
        )  # square = the working size
