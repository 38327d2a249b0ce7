"""Extending the canvas: geometry, tiles, byte-identical photo, and the run through the Studio."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core import outpaint
from core.catalogue import Catalogue
from core.errors import BadParameterError
from core.outpaint import Sides, sides_for_aspect, strips, tiles
from core.pool import ModelPool
from core.requests import OutpaintRequest
from core.runner import Studio
from core.store import ResultStore


def _studio(tmp_path, catalogue: Catalogue | None = None) -> Studio:
    return Studio(catalogue or Catalogue.load(), ModelPool(1), ResultStore(tmp_path / "results", 1 << 30))


def _photo(size=(120, 90), seed=0, mode="RGB") -> Image.Image:
    channels = 4 if mode == "RGBA" else 3
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


@pytest.mark.parametrize(
    ("size", "aspect", "anchor", "expected"),
    [
        ((1024, 768), "16:9", "center", Sides(left=170, right=171)),
        ((1024, 768), "16:9", "left", Sides(right=341)),
        ((1024, 768), "16:9", "right", Sides(left=341)),
        ((1024, 768), "1:1", "top", Sides(bottom=256)),
        ((1024, 768), "1:1", "bottom-right", Sides(top=256)),
        ((600, 800), "3:2", "center", Sides(left=300, right=300)),
        ((800, 600), "9:16", "center", Sides(top=411, bottom=411)),
    ],
)
def test_aspect_grows_only_the_short_side_with_the_photo_at_the_anchor(size, aspect, anchor, expected):
    sides = sides_for_aspect(size, aspect, anchor)
    assert sides == expected
    width, height = sides.new_size(size)
    w, h = outpaint.parse_aspect(aspect)
    assert abs(width / height - w / h) < 1 / min(width, height)


@pytest.mark.parametrize("bad", ["16x9", "0:1", "16:", "a:b", "1000:1"])
def test_bad_aspects_are_refused_in_words(bad):
    with pytest.raises(BadParameterError, match="aspect"):
        sides_for_aspect((100, 100), bad)


def test_an_aspect_the_photo_already_has_is_refused():
    with pytest.raises(BadParameterError, match="already 4:3"):
        sides_for_aspect((800, 600), "4:3")


def test_the_new_frame_keeps_the_photo_and_masks_exactly_the_new_area():
    photo = _photo((40, 30), mode="RGBA")
    sides = Sides(left=5, top=7, right=11, bottom=3)
    frame, mask = outpaint.extended(photo, sides)
    assert frame.size == (56, 40) and frame.mode == "RGBA"
    assert np.array_equal(np.asarray(frame)[7:37, 5:45], np.asarray(photo))
    expected = np.full((40, 56), 255, np.uint8)
    expected[7:37, 5:45] = 0
    assert np.array_equal(np.asarray(mask), expected)
    assert (np.asarray(frame)[..., 3][expected > 0] == 255).all()  # the new area is opaque


def test_a_long_edge_is_one_scaled_strip_and_a_long_band_is_tiled_outwards():
    ((side, strip),) = strips((4000, 3000), Sides(right=512))
    assert side == "right" and strip == (3488, 0, 4512, 3000)  # the band and as much photo beside it
    assert tiles(strip, side, 512) == [strip]  # one model call whatever the edge's length
    ((side, strip),) = strips((1000, 750), Sides(left=3000))
    cut = tiles(strip, side, 512)
    assert len(cut) > 1 and cut[0][2] == strip[2]  # the first tile holds the photo
    assert all(a[0] < b[2] and b[0] < a[2] for a, b in zip(cut[1:], cut[:-1], strict=True))  # neighbours overlap
    assert min(box[0] for box in cut) == 0 and max(box[2] for box in cut) == strip[2]


def _identity_count(calls):
    def paint(image, mask, index):
        calls.append((image.size, mask.size, index, np.asarray(mask).copy()))
        return Image.new("RGB", image.size, (10 * index, 200, 30))

    return paint


def test_fill_keeps_the_photo_byte_identical_and_paints_every_new_pixel():
    photo = _photo((300, 200), mode="RGBA")
    sides = Sides(left=40, top=500, right=0, bottom=20)
    calls = []
    result = outpaint.fill(
        photo, sides, working_resolution=64, size_multiple=8, paint=_identity_count(calls), prefill=None
    )
    assert result.size == (340, 720) and result.mode == "RGBA"
    pixels = np.asarray(result)
    assert np.array_equal(pixels[500:700, 40:340], np.asarray(photo))
    assert len(calls) >= 4  # left, bottom, and the tall top band in tiles
    assert all(size == msize and size[0] % 8 == 0 and size[1] % 8 == 0 for size, msize, _, _ in calls)
    new = np.ones(pixels.shape[:2], bool)
    new[500:700, 40:340] = False
    assert (pixels[..., 1][new] == 200).all()  # every new pixel is the model's


def test_the_start_noise_follows_the_seed_and_only_generative_fills_get_it():
    photo = _photo((160, 120), seed=3)
    sides = Sides(left=48, bottom=64)
    seen = {}

    def run(seed, prefill):
        def paint(image, mask, index):  # records what the model would be given
            seen.setdefault((seed, prefill is not None), []).append(np.asarray(image).copy())
            return image

        return np.asarray(
            outpaint.fill(photo, sides, working_resolution=128, size_multiple=8, paint=paint, prefill=prefill, seed=seed)
        )

    def keep(image, mask):  # a pre-fill that keeps the edge-extended start as it is
        return image

    first, again, other = run(5, keep), run(5, keep), run(6, keep)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(first[:120, 48:], np.asarray(photo)) and np.array_equal(other[:120, 48:], np.asarray(photo))
    # A remover's start is the bare edge extension: no noise, so the seed changes nothing.
    plain, plain_other = run(5, None), run(6, None)
    assert np.array_equal(plain, plain_other)
    column = seen[(5, False)][0][:, 0]  # the new left band's outer column, edge-extended from the photo's
    noisy = seen[(5, True)][0][:, 0]
    assert np.abs(noisy.astype(int) - column.astype(int)).max() > 0


def test_prefill_runs_on_the_tile_before_the_model():
    photo = Image.new("RGB", (64, 64), (0, 0, 255))
    seen = []

    def paint(image, mask, index):
        seen.append(np.asarray(image).copy())
        return image

    def red(image, mask):
        return Image.new("RGB", image.size, (255, 0, 0))

    result = outpaint.fill(photo, Sides(right=32), working_resolution=64, size_multiple=8, paint=paint, prefill=red)
    tile = seen[0]
    assert (tile[:, -1] == (255, 0, 0)).all() and (tile[:, 0] == (0, 0, 255)).all()
    assert np.asarray(result)[:, -1].tolist()[0] == [255, 0, 0]


def test_opencv_prefill_continues_the_edge_colours():
    image = np.zeros((128, 128, 3), np.uint8)
    image[:, :64] = (200, 100, 50)
    mask = np.zeros((128, 128), np.uint8)
    mask[:, 64:] = 255
    filled = np.asarray(outpaint.opencv_prefill(Image.fromarray(image), Image.fromarray(mask)))
    assert np.abs(filled[:, 64:80].astype(int) - (200, 100, 50)).max() < 30


# -- through the Studio ------------------------------------------------------------------------


def test_outpaint_with_opencv_is_cached_keeps_the_photo_and_carries_its_parameters(tmp_path, coffee):
    studio = _studio(tmp_path)
    request = OutpaintRequest(model="opencv-telea", image=coffee, aspect="16:9", anchor="left")
    result = studio.run(studio.prepare(request))
    image = result.images[0]
    assert image.size == (711, 400)
    assert np.array_equal(np.asarray(image)[:, :600], np.asarray(coffee))
    parameters = result.parameters
    assert parameters["task"] == "outpaint" and parameters["right"] == 111 and parameters["left"] == 0
    assert parameters["image_digest"] and "mask_digest" not in parameters
    # The same frame given in pixels is the same request, served from the store.
    again = studio.run(studio.prepare(OutpaintRequest(model="opencv-telea", image=coffee, right=111)))
    assert again.cached and again.pngs[0] == result.pngs[0]
    from core.provenance import read_parameters

    assert read_parameters(result.pngs[0])["right"] == 111
    # Stored: only the new band; served again around the request's own photo, pixel for pixel.
    stored = studio.store.get(result.key)
    assert [Image.open(io.BytesIO(png)).size for png in stored.pngs] == [(111, 400)]
    assert studio.stored_result(result.key) is None  # the photo is needed to compose it
    assert np.array_equal(np.asarray(studio.stored_result(result.key, coffee).images[0]), np.asarray(image))


def test_opencv_fills_each_strip_once_at_a_bounded_size_in_process(tmp_path, coffee, monkeypatch):
    from core.engines import opencv

    studio = _studio(tmp_path)
    engine = studio.pool.get(studio.catalogue.get("opencv-telea"))
    calls, original = [], engine.inpaint

    def recording(image, mask, request, report):
        calls.append((image.size, int(np.count_nonzero(np.asarray(mask)))))
        return original(image, mask, request, report)

    monkeypatch.setattr(engine, "inpaint", recording)
    monkeypatch.setattr(opencv, "_inpaint_in_child", None)  # a call into the child process would fail
    photo = coffee.resize((1800, 1200))
    result = studio.run(studio.prepare(OutpaintRequest(model="opencv-telea", image=photo, right=700, top=300)))
    assert len(calls) == 2  # one call per strip (right, then top), whatever their length
    for (width, height), masked in calls:
        assert width * height <= 1.05 * outpaint.NATIVE_ENGINE_RESOLUTION**2
        assert opencv.estimated_seconds(masked, 5) < opencv.IN_PROCESS_S
    image = np.asarray(result.images[0])
    assert image.shape == (1500, 2500, 3)
    assert np.array_equal(image[300:, :1800], np.asarray(photo))
    assert image[:300].std() > 1 and image[:, 1800:].std() > 1  # the bands are filled, not flat


def test_outpaint_beyond_the_image_limits_is_refused_before_any_work(tmp_path, coffee):
    studio = _studio(tmp_path)
    with pytest.raises(BadParameterError, match="limit"):
        studio.prepare(OutpaintRequest(model="opencv-telea", image=coffee, right=9000))
    with pytest.raises(BadParameterError, match="nothing to extend"):
        studio.prepare(OutpaintRequest(model="opencv-telea", image=coffee))
    with pytest.raises(BadParameterError, match="not both"):
        studio.prepare(OutpaintRequest(model="opencv-telea", image=coffee, right=8, aspect="1:1"))


def test_outpaint_with_a_diffusion_model_repaints_each_tile_and_reports_all_steps(tmp_path, tiny_catalogue, coffee):
    studio = _studio(tmp_path, tiny_catalogue)
    photo = coffee.resize((96, 64))
    request = OutpaintRequest(model="tiny-sd-inpaint", image=photo, top=256, prompt="sky", seed=3, strength=1.0)
    prepared = studio.prepare(request)
    steps = []
    result = studio.run(prepared, lambda step, total, preview=None: steps.append((step, total)))
    image = result.images[0]
    assert image.size == (96, 320)
    assert np.array_equal(np.asarray(image)[256:], np.asarray(photo))
    assert steps[-1] == (prepared.total_steps, prepared.total_steps) and prepared.total_steps > 2
    assert [s for s, _ in steps] == sorted(s for s, _ in steps)
    # The same seed gives the same pixels; another seed does not.
    same = studio.run(studio.prepare(OutpaintRequest(**{**_fields(request), "seed": 3})))
    assert same.cached
    other = studio.run(studio.prepare(OutpaintRequest(**{**_fields(request), "seed": 4}))).images[0]
    assert not np.array_equal(np.asarray(other)[:256], np.asarray(image)[:256])


def _fields(request: OutpaintRequest) -> dict:
    from dataclasses import fields

    return {f.name: getattr(request, f.name) for f in fields(request)}


def test_cli_and_api_extend_the_same_way_and_the_api_queues_it_as_a_job(tmp_path, coffee, monkeypatch):
    import base64

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from core import services
    from core.api import API_PREFIX, api_routes
    from core.cli import main
    from tests.api_helpers import wait_for_status

    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    photo = tmp_path / "coffee.png"
    coffee.resize((200, 150)).save(photo)
    out = tmp_path / "wide.png"
    assert (
        main(
            ["outpaint", str(photo), "--aspect", "16:9", "--anchor", "left", "--model", "opencv-telea", "-o", str(out)]
        )
        == 0
    )
    assert main(["outpaint", str(photo), "--model", "opencv-telea", "-o", str(out)]) == 2  # nothing to extend
    services.reset()
    try:
        with TestClient(Starlette(routes=api_routes())) as client:
            image = base64.b64encode(photo.read_bytes()).decode()
            answer = client.post(f"{API_PREFIX}/outpaint", json={"model": "opencv-telea", "image": image, "right": 67})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["cached"] and base64.b64decode(body["image"]) == out.read_bytes()  # the CLI's result
            created = client.post(
                f"{API_PREFIX}/jobs", json={"task": "outpaint", "model": "opencv-telea", "image": image, "top": 10}
            )
            assert created.status_code == 202, created.text
            wait_for_status(client, created.json()["id"], {"done"})
            result = client.get(f"{API_PREFIX}/jobs/{created.json()['id']}/result").json()
            assert Image.open(io.BytesIO(base64.b64decode(result["image"]))).size == (200, 160)
            refused = client.post(
                f"{API_PREFIX}/outpaint", json={"model": "opencv-telea", "image": image, "aspect": "wide"}
            )
            assert refused.status_code == 400 and "aspect" in refused.json()["error"]["message"]
    finally:
        services.reset()
