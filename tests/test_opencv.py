"""The OpenCV engine on work too long to wait for: refused over the operator's limit, killable when cancelled.

`cv2.inpaint` is one uninterruptible C call whose cost grows with the masked area: long runs go to a child
process, which must give the very pixels the in-process call gives, and die within a second of a cancel.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from core.catalogue import Catalogue
from core.engines import opencv
from core.errors import BadParameterError, EngineError
from core.jobs import JobQueue, JobState
from core.pool import ModelPool
from core.requests import InpaintRequest
from core.runner import Studio
from core.settings import SettingsError


@pytest.fixture
def studio():
    return Studio(Catalogue.load(None), ModelPool(1), None)


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    width, height = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def _every_other_row(size: tuple[int, int]) -> Image.Image:
    """The pathological mask: every masked pixel has known neighbours, and there are millions of them."""
    width, height = size
    rows = np.zeros((height, width), np.uint8)
    rows[::2] = 255
    return Image.fromarray(rows)


@pytest.mark.parametrize("model", ["opencv-telea", "opencv-ns"])
def test_a_run_in_the_child_process_gives_the_same_pixels_as_in_process(studio, model, monkeypatch):
    photo = _noise((240, 160))
    request = InpaintRequest(model=model, image=photo, mask=_box_mask(photo.size, (60, 40, 180, 120)), mask_blur=0)
    here = np.asarray(studio.inpaint(request).images[0])
    monkeypatch.setattr(opencv, "IN_PROCESS_S", 0.0)  # everything to the child
    started = time.monotonic()
    there = np.asarray(studio.inpaint(request).images[0])
    assert np.array_equal(here, there)
    assert time.monotonic() - started < 20


def test_a_cancelled_long_run_stops_within_a_second(studio):
    size = (2000, 1500)  # 1.5 MP masked: several seconds of cv2.inpaint on any CPU
    request = InpaintRequest(
        model="opencv-telea", image=_noise(size), mask=_every_other_row(size), mask_blur=0, mask_grow=0
    )
    assert opencv.estimated_seconds(size[0] * size[1] // 2, 5) > 5 * opencv.IN_PROCESS_S
    queue = JobQueue(studio)
    try:
        job_id = queue.submit(request, session="test")
        deadline = time.monotonic() + 30
        while queue.status(job_id).state is not JobState.RUNNING:
            assert time.monotonic() < deadline, queue.status(job_id)
            time.sleep(0.02)
        time.sleep(1.0)  # the child has started (~0.3 s) and is inside cv2.inpaint, seconds from its end
        cancelled_at = time.monotonic()
        queue.cancel(job_id)
        final = queue.wait(job_id, timeout=10)
        latency = time.monotonic() - cancelled_at
    finally:
        queue.shutdown()
    assert final.state is JobState.CANCELLED, final
    assert latency <= 1.0, latency


def test_a_cancel_lands_while_a_large_edit_is_still_being_prepared(studio, monkeypatch):
    """A 48 MP edit spends seconds on its mask and crop before the engine's first step: a cancel meanwhile
    stops it at the next of those steps, and the engine never runs."""
    from core.masks import ops

    growing, cancelled = threading.Event(), threading.Event()
    real_grow = ops.grow

    def slow_grow(mask, pixels):  # as a 48 MP mask's dilation would take, until the test has cancelled
        growing.set()
        cancelled.wait(10)
        return real_grow(mask, pixels)

    ran = []
    monkeypatch.setattr(ops, "grow", slow_grow)
    monkeypatch.setattr(opencv.OpenCVEngine, "inpaint", lambda *args: ran.append(args))
    queue = JobQueue(studio)
    try:
        size = (320, 240)
        job_id = queue.submit(InpaintRequest(model="opencv-telea", image=_noise(size), mask=_box_mask(size, (40, 40, 90, 90))), session="test")
        assert growing.wait(30)
        queue.cancel(job_id)
        cancelled.set()
        final = queue.wait(job_id, timeout=10)
    finally:
        queue.shutdown()
    assert final.state is JobState.CANCELLED, final
    assert ran == []


def test_work_over_the_operators_limit_is_refused_before_it_runs(studio, monkeypatch):
    size = (2000, 1500)
    request = InpaintRequest(model="opencv-ns", image=_noise(size), mask=_every_other_row(size), mask_blur=0)
    monkeypatch.setenv(opencv.MAX_SECONDS_ENV, "2")
    started = time.monotonic()
    with pytest.raises(BadParameterError) as refused:
        studio.inpaint(request)
    assert time.monotonic() - started < 3  # refused, not run
    message = refused.value.message
    assert "over this server's limit of 2 s (STUDIO_MAX_OPENCV_SECONDS)" in message and "1.5 MP masked" in message
    monkeypatch.setenv(opencv.MAX_SECONDS_ENV, "soon")
    with pytest.raises(SettingsError, match="STUDIO_MAX_OPENCV_SECONDS must be a number"):
        studio.inpaint(request)


def test_a_child_that_dies_is_an_engine_error(studio, monkeypatch, tmp_path):
    crashing = tmp_path / "crash.py"
    crashing.write_text("import sys\nsys.exit(3)\n")
    monkeypatch.setattr(opencv, "_CHILD", crashing)
    monkeypatch.setattr(opencv, "IN_PROCESS_S", 0.0)
    photo = _noise((64, 64))
    with pytest.raises(EngineError, match="OpenCV failed while running"):
        studio.inpaint(InpaintRequest(model="opencv-telea", image=photo, mask=_box_mask(photo.size, (8, 8, 32, 32))))
