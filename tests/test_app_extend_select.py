"""The Inpaint page's Extend mode and click-to-select, in Streamlit's AppTest, as a user drives them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core import services
from core.images import load_image
from core.jobs import JobState
from tests.app_helpers import button, open_page, run_until, texts

pytestmark = pytest.mark.usefixtures("fresh_app")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_extend_to_16_9_shows_the_new_frame_and_keeps_the_photo(coffee):
    photo = coffee.resize((300, 200))
    at = open_page("2_Inpaint.py")
    at.file_uploader(key="inpaint.upload").set_value(("cup.png", png_bytes(photo), "image/png"))
    at.run()
    at.segmented_control(key="inpaint.what").set_value("Extend the canvas")
    at.run()
    assert not at.exception
    at.radio(key="inpaint.extend.how").set_value("To an aspect ratio")
    at.run()
    at.selectbox(key="inpaint.extend.aspect").set_value("16:9")
    at.selectbox(key="inpaint.extend.anchor").set_value("left")
    at.selectbox(key="inpaint.extend.model").set_value("opencv-telea")
    at.run()
    assert any("New frame: 356×200" in caption for image in at.get("image") for caption in image.captions)
    button(at, "Extend").click()
    run_until(at.run(), lambda at: "Result" in texts(at.subheader), what="the extended image")
    queue = services.queue()
    status = queue.status(at.session_state["inpaint.extend.job"])
    assert status.state is JobState.DONE
    result = np.asarray(load_image(queue.result(status.id).pngs[0]))
    assert result.shape[:2] == (200, 356)
    assert np.array_equal(result[:, :300], np.asarray(photo))
    # Keep editing the extended picture.
    button(at, "Use result as new input").click()
    at.run()
    assert at.session_state["inpaint.source"].image.size == (356, 200)
    assert "inpaint.extend.job" not in at.session_state


def test_extend_by_pixels_needs_a_side_before_it_runs(coffee):
    at = open_page("2_Inpaint.py")
    at.file_uploader(key="inpaint.upload").set_value(("cup.png", png_bytes(coffee), "image/png"))
    at.run()
    at.segmented_control(key="inpaint.what").set_value("Extend the canvas")
    at.run()
    assert button(at, "Extend").disabled
    at.number_input(key="inpaint.extend.top").set_value(128)
    at.run()
    assert not button(at, "Extend").disabled
    assert any("New frame: 600×528" in caption for image in at.get("image") for caption in image.captions)


@pytest.fixture
def tiny_sam_models(tmp_path_factory, monkeypatch):
    from tests.tiny_sam import export_tiny_sam, write_sam_catalogue

    work = tmp_path_factory.mktemp("tiny-sam-app")
    encoder, _ = export_tiny_sam(work / "sam")
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(write_sam_catalogue(work / "models.toml", encoder)))


def scene() -> Image.Image:
    pixels = np.full((600, 1500, 3), 20, np.uint8)
    pixels[150:450, 150:600] = 240
    pixels[100:500, 900:1400] = 128
    return Image.fromarray(pixels)


def test_clicked_selection_becomes_the_mask_and_can_cut_the_painted_one(tiny_sam_models):
    from core.keys import digest_bytes
    from core.ui.mask_editor import strokes_key

    photo = png_bytes(scene())
    at = open_page("2_Inpaint.py")
    at.file_uploader(key="inpaint.upload").set_value(("scene.png", photo, "image/png"))
    at.run()
    # What the component sends for a click on the white block (photo pixels).
    at.session_state["inpaint.selection"] = {"doc": digest_bytes(photo), "points": [[300.0, 250.0, True]], "box": None}
    at.run()
    assert not at.exception
    assert any("last selection" in caption for caption in texts(at.caption))
    button(at, "Run").click()
    run_until(at.run(), lambda at: "Use as next round" in [b.label for b in at.button], what="the removal")
    queue = services.queue()
    result = np.asarray(load_image(queue.result(at.session_state["inpaint.job"]).pngs[0]))
    changed = np.any(result != np.asarray(scene()), axis=2)
    assert changed[200:400, 200:550].mean() > 0.5 and not changed[:, 800:].any()
    # Painted strokes over both blocks, with the selection cut out: only the grey block stays masked.
    strokes = [{"tool": "rect", "size": 0, "points": [[100, 100], [1450, 520]]}]
    at.session_state[strokes_key("inpaint")] = {"doc": digest_bytes(photo), "epoch": 7, "strokes": strokes}
    from core.ui.select import SUBTRACT, combined

    at.segmented_control(key="inpaint.select-how").set_value(SUBTRACT)
    at.run()
    from core.masks.strokes import mask_from_strokes

    drawn = mask_from_strokes(strokes, (1500, 600))
    selection = at.session_state["inpaint.selection-memo"][1]
    cut = np.asarray(combined(drawn, selection, SUBTRACT)) > 0
    assert cut[300, 1150] and not cut[300, 300]
    # and the page runs exactly that mask: the grey block is repainted, the selected white block kept.
    first = at.session_state["inpaint.job"]
    button(at, "Run").click()
    run_until(
        at.run(),
        lambda at: at.session_state["inpaint.job"] != first and "Use as next round" in [b.label for b in at.button],
        what="the removal with the selection cut out",
    )
    result = np.asarray(load_image(queue.result(at.session_state["inpaint.job"]).pngs[0]))
    changed = np.any(result != np.asarray(scene()), axis=2)
    assert changed[150:450, 950:1350].mean() > 0.5 and changed[250:350, 300:450].mean() < 0.05


def test_without_a_segmentation_model_the_panel_says_how_to_get_one(coffee):
    at = open_page("2_Inpaint.py")
    at.file_uploader(key="inpaint.upload").set_value(("cup.png", png_bytes(coffee), "image/png"))
    at.run()
    assert any("python -m core download mobile-sam" in text for text in texts(at.info))
