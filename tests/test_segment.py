"""Click to select on tiny MobileSAM stand-ins (tests/tiny_sam.py): the export's exact names, shapes
and coordinate conventions, so point scaling, include/exclude, boxes and mask size are checked."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from core.catalogue import Catalogue
from core.engines.sam import SamSegmenter, resized_size, to_model_coords
from core.errors import BadParameterError, ModelUnavailableError
from core.pool import ModelPool
from core.requests import SegmentRequest
from core.runner import Studio
from tests.tiny_sam import export_tiny_sam, write_sam_catalogue


@pytest.fixture(scope="session")
def tiny_sam_file(tmp_path_factory):
    encoder, _ = export_tiny_sam(tmp_path_factory.mktemp("tiny-sam"))
    return write_sam_catalogue(tmp_path_factory.mktemp("sam-catalogue") / "models.toml", encoder)


@pytest.fixture
def studio(tiny_sam_file, monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(tiny_sam_file))
    return Studio(Catalogue.load(tiny_sam_file), ModelPool(1), None)


def scene(size=(1500, 600)) -> Image.Image:
    """A wide photo: a bright block on the left, a mid-grey block on the right, dark elsewhere."""
    pixels = np.full((size[1], size[0], 3), 20, np.uint8)
    pixels[150:450, 150:600] = 240
    pixels[100:500, 900:1400] = 128
    return Image.fromarray(pixels)


def box_of(mask: Image.Image) -> tuple[int, int, int, int]:
    return mask.getbbox()


def selects(mask: Image.Image, box: tuple[int, int, int, int]) -> bool:
    """Nearly all of `box` is selected and nearly nothing outside it (the stand-in works in 16-px
    cells of the 1024 frame, so edges are off by up to one cell)."""
    selected = np.asarray(mask) > 0
    left, top, right, bottom = box
    inside = np.zeros_like(selected)
    inside[top:bottom, left:right] = True
    return selected[inside].mean() > 0.8 and selected[~inside].mean() < 0.05


def test_sizes_and_point_scaling_follow_sam_resize_longest_side():
    assert resized_size((1500, 600)) == (1024, 410)  # int(600 * 1024 / 1500 + 0.5)
    assert resized_size((600, 1500)) == (410, 1024)
    assert resized_size((1024, 1024)) == (1024, 1024)
    scaled = to_model_coords(np.array([[1500, 600], [750, 300]], np.float32), (1500, 600))
    assert np.allclose(scaled, [[1024, 410], [512, 205]])  # each axis by its own factor


def test_a_click_selects_the_object_under_it_at_the_photos_size(studio):
    photo = scene()
    mask = studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=((300, 300, True),)))
    assert mask.size == photo.size and mask.mode == "L"
    assert set(np.unique(np.asarray(mask))) == {0, 255}
    left, top, right, bottom = box_of(mask)
    # The bright block, to within one 16-px cell of the 1024 frame (~23 photo px here).
    assert abs(left - 150) <= 24 and abs(right - 600) <= 24 and abs(top - 150) <= 24 and abs(bottom - 450) <= 24
    grey = studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=((1150, 300, True),)))
    assert selects(grey, (900, 100, 1400, 500)) and not selects(grey, (150, 150, 600, 450))


def test_tall_photos_scale_points_by_their_own_axis(studio):
    photo = scene().transpose(Image.Transpose.TRANSPOSE)  # 600 x 1500
    mask = studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=((300, 1150, True),)))
    assert selects(mask, (100, 900, 500, 1400))


def test_an_exclude_point_removes_what_is_around_it(studio):
    photo = scene()
    both = ((300, 300, True), (1150, 300, True))
    whole = np.asarray(studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=both))) > 0
    assert whole[300, 300] and whole[300, 1150]
    cut = np.asarray(studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=(*both, (1150, 300, False)))))
    assert cut[300, 300] == 255 and cut[300, 1150] == 0 and cut[300, 1380] == 255  # a disc around the exclude click


def test_a_box_alone_selects_inside_it(studio):
    photo = scene()
    mask = studio.segment(SegmentRequest(model="tiny-sam", image=photo, box=(700, 50, 1000, 550)))
    left, top, right, bottom = box_of(mask)
    assert abs(left - 700) <= 4 and abs(right - 1000) <= 4 and abs(top - 50) <= 4 and abs(bottom - 550) <= 4


def test_the_embedding_is_computed_once_per_photo(studio, monkeypatch):
    photo = scene()
    segmenter: SamSegmenter = studio.segmenter(studio.catalogue.get("tiny-sam"))
    runs = []
    original = segmenter._encoder.run
    monkeypatch.setattr(segmenter._encoder, "run", lambda *a, **k: runs.append(1) or original(*a, **k), raising=False)
    for x in (300, 1150, 320):
        studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=((x, 300, True),)))
    assert len(runs) == 1
    studio.segment(SegmentRequest(model="tiny-sam", image=scene((1400, 600)), points=((300, 300, True),)))
    assert len(runs) == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "click at least one point"),
        ({"points": ((5000, 10, True),)}, "point x"),
        ({"points": ((10, 10, False),)}, "every point excludes"),
        ({"box": (500, 10, 100, 20)}, "left < right"),
        ({"points": ((1, 2),)}, "a point is"),
    ],
)
def test_bad_prompts_are_refused_in_words(studio, fields, message):
    with pytest.raises(BadParameterError, match=message):
        studio.segment(SegmentRequest(model="tiny-sam", image=scene(), **fields))


def test_a_missing_model_says_how_to_get_it(tmp_path):
    studio = Studio(Catalogue.load(), ModelPool(1), None)
    spec = studio.catalogue.get("mobile-sam")
    assert spec.supports("segment") and not spec.availability().ready
    with pytest.raises(ModelUnavailableError, match="python -m core download mobile-sam"):
        studio.segment(SegmentRequest(model="mobile-sam", image=scene(), points=((1, 1, True),)))


def test_an_edit_model_is_refused_for_selection(studio):
    with pytest.raises(BadParameterError, match="cannot select"):
        studio.segment(SegmentRequest(model="opencv-telea", image=scene(), points=((1, 1, True),)))


def test_a_click_after_the_first_is_quick(studio):
    photo = scene()
    studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=((300, 300, True),)))
    started = time.perf_counter()
    studio.segment(SegmentRequest(model="tiny-sam", image=photo, points=((320, 300, True),)))
    assert time.perf_counter() - started < 1.0  # the real-size figure is in bench/segment_click.py


# -- the same mask from the CLI and the API ----------------------------------------------------


def test_cli_and_api_give_the_same_mask_for_the_same_clicks(tiny_sam_file, monkeypatch, tmp_path):
    import base64
    import io

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from core import services
    from core.api import API_PREFIX, api_routes
    from core.cli import main

    monkeypatch.setenv("STUDIO_MODELS_FILE", str(tiny_sam_file))
    photo_path = tmp_path / "scene.png"
    scene().save(photo_path)
    out = tmp_path / "mask.png"
    status = main(
        [
            "segment",
            str(photo_path),
            "--point",
            "300,300",
            "--exclude",
            "500,300",
            "--box",
            "100,100,700,500",
            "-o",
            str(out),
            "--model",
            "tiny-sam",
        ]
    )
    assert status == 0
    services.reset()
    try:
        with TestClient(Starlette(routes=api_routes())) as client:
            body = {
                "model": "tiny-sam",
                "image": base64.b64encode(photo_path.read_bytes()).decode(),
                "points": [{"x": 300, "y": 300}, {"x": 500, "y": 300, "include": False}],
                "box": [100, 100, 700, 500],
            }
            answer = client.post(f"{API_PREFIX}/segment", json=body)
            assert answer.status_code == 200, answer.text
            payload = answer.json()
            assert (payload["width"], payload["height"], payload["model"]) == (1500, 600, "tiny-sam")
            assert base64.b64decode(payload["mask"]) == out.read_bytes()
            mask = np.asarray(Image.open(io.BytesIO(out.read_bytes())))
            assert mask[300, 300] == 255 and mask[300, 500] == 0
            # Bad prompts are a 400 with one line; a missing model a 503 that says how to get it.
            bad = client.post(f"{API_PREFIX}/segment", json={**body, "points": [], "box": None})
            assert bad.status_code == 400 and "click" in bad.json()["error"]["message"]
            missing = client.post(f"{API_PREFIX}/segment", json={**body, "model": "mobile-sam"})
            assert (
                missing.status_code == 503
                and "python -m core download mobile-sam" in missing.json()["error"]["message"]
            )
    finally:
        services.reset()
