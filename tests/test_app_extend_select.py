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
