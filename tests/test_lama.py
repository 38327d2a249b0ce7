"""The LaMa engine on tiny ONNX exports with the real export's interface (tests/tiny_lama.py).

First the engine on its own (interface, both output ranges, progress and cancel, failures), then
through the real Studio: output size, byte-identical unmasked pixels, reproducibility, the cost
following the mask on a large photo, and the hub entry offline.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.catalogue import Catalogue
from core.engines import load_engine
from core.engines.base import silent_reporter
from core.engines.lama import LamaEngine
from core.errors import BadParameterError, CancelledError, ModelUnavailableError
from core.requests import GenerateRequest, InpaintRequest
from tests import test_engine_contract as contract
from tests.test_engine_contract import StepLog
from tests.tiny_lama import TinyLama, export_tiny_lama, write_lama_catalogue


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("tiny-lama")
    return {
        # Carve's export answers in [0, 255]; other LaMa exports in [0, 1], some with a named batch axis.
        "tiny-lama": export_tiny_lama(folder / "byte.onnx", output_scale=255.0),
        "tiny-lama-unit": export_tiny_lama(folder / "unit.onnx", output_scale=1.0, named_batch=True),
    }


@pytest.fixture
def catalogue(exports, tmp_path, monkeypatch) -> Catalogue:
    catalogue_file = write_lama_catalogue(tmp_path / "models.toml", exports)
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(catalogue_file))
    return Catalogue.load(catalogue_file)


@pytest.fixture
def photo_and_mask(astronaut):
    mask = Image.new("L", astronaut.size, 0)
    ImageDraw.Draw(mask).ellipse((190, 70, 320, 200), fill=255)  # the astronaut's face
    return astronaut, mask


def _request(model: str, photo: Image.Image, mask: Image.Image, **changes) -> InpaintRequest:
    return InpaintRequest(**{"model": model, "image": photo, "mask": mask, "seed": 7, **changes})


def _engine(catalogue: Catalogue, model_id: str) -> LamaEngine:
    return load_engine(catalogue.get(model_id))


# ---------------------------------------------------------------------------------------------
# The engine on its own


def test_engine_fills_the_hole_from_its_surroundings(catalogue, photo_and_mask):
    photo, mask = photo_and_mask
    engine = _engine(catalogue, "tiny-lama")
    assert "CPUExecutionProvider" in engine.providers
    steps = StepLog()
    (out,) = engine.inpaint(photo, mask, _request("tiny-lama", photo, mask), steps).images
    assert out.size == photo.size and out.mode == "RGB"
    assert steps.steps == [(0, 1), (1, 1)]
    before, after, hole = np.asarray(photo, np.int16), np.asarray(out, np.int16), np.asarray(mask) > 0
    # Kept pixels come back as they went in (the model reproduces them; 8-bit rounding at most).
    assert np.abs(after[~hole] - before[~hole]).max() <= 1
    # The face is gone: the hole holds a blur of what surrounds it, far from the original pixels.
    assert np.abs(after[hole] - before[hole]).mean() > 20
    assert after[hole].std() < before[hole].std()


def test_both_output_ranges_give_the_same_pixels(catalogue, photo_and_mask):
    photo, mask = photo_and_mask
    byte = _engine(catalogue, "tiny-lama").inpaint(photo, mask, _request("tiny-lama", photo, mask), silent_reporter)
    unit = _engine(catalogue, "tiny-lama-unit").inpaint(photo, mask, _request("tiny-lama-unit", photo, mask), silent_reporter)
    difference = np.abs(np.asarray(byte.images[0], np.int16) - np.asarray(unit.images[0], np.int16))
    assert difference.max() <= 1


@pytest.mark.parametrize("model_id", ["tiny-lama", "tiny-lama-unit"])
def test_a_near_black_photo_stays_dark_whichever_the_range(catalogue, photo_and_mask, model_id):
    # A [0, 255] answer for an almost black photo is <= 1.5 everywhere: read as [0, 1] it would turn white.
    photo, mask = photo_and_mask
    dark = Image.fromarray((np.asarray(photo) // 200).astype(np.uint8))  # pixel values 0 and 1
    (out,) = _engine(catalogue, model_id).inpaint(dark, mask, _request(model_id, dark, mask), silent_reporter).images
    assert np.asarray(out).max() <= 2


def test_a_region_of_another_size_is_resized_to_the_export_and_back(catalogue, coffee):
    photo = coffee.crop((0, 0, 592, 400))  # multiples of 8, not 512 x 512
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).rectangle((250, 150, 350, 250), fill=255)
    (out,) = _engine(catalogue, "tiny-lama").inpaint(photo, mask, _request("tiny-lama", photo, mask), silent_reporter).images
    assert out.size == photo.size
    hole = np.asarray(mask) > 0
    assert np.abs(np.asarray(out, np.int16)[hole] - np.asarray(photo, np.int16)[hole]).mean() > 5


def test_cancel_is_checked_before_the_model_runs(catalogue, photo_and_mask):
    photo, mask = photo_and_mask
    steps = StepLog(cancel_at=0)
    with pytest.raises(CancelledError):
        _engine(catalogue, "tiny-lama").inpaint(photo, mask, _request("tiny-lama", photo, mask), steps)
    assert steps.steps == [(0, 1)]


def test_close_drops_the_session(catalogue, photo_and_mask):
    photo, mask = photo_and_mask
    engine = _engine(catalogue, "tiny-lama")
    engine.close()
    assert engine.providers == []
    with pytest.raises(ModelUnavailableError):
        engine.inpaint(photo, mask, _request("tiny-lama", photo, mask), silent_reporter)


def test_text_to_image_is_refused(catalogue):
    with pytest.raises(BadParameterError, match="cannot generate"):
        _engine(catalogue, "tiny-lama").text_to_image(GenerateRequest(model="tiny-lama", prompt="x"), silent_reporter)


def test_missing_local_file_is_unavailable_without_a_path(catalogue, tmp_path):
    spec = catalogue.get("tiny-lama")
    gone = tmp_path / "nowhere" / "lama.onnx"
    with pytest.raises(ModelUnavailableError) as raised:
        LamaEngine.load(replace(spec, path=str(gone)))
    assert str(tmp_path) not in str(raised.value) and "/" not in str(raised.value)


def test_a_file_that_is_not_onnx_is_refused(catalogue, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model" * 100)
    with pytest.raises(ModelUnavailableError, match="damaged or not a model") as raised:
        LamaEngine.load(replace(catalogue.get("tiny-lama"), path=str(junk)))
    assert str(tmp_path) not in str(raised.value)


def test_an_onnx_model_with_another_interface_is_refused(catalogue, tmp_path):
    import torch
    other = tmp_path / "other.onnx"
    torch.onnx.export(
        TinyLama(1.0), (torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)), str(other),
        input_names=["input", "mask"], output_names=["output"], dynamo=False,
    )  # fmt: skip
    with pytest.raises(ModelUnavailableError, match="not a LaMa export"):
        LamaEngine.load(replace(catalogue.get("tiny-lama"), path=str(other)))


def test_the_hub_entry_offline_says_how_to_get_it(catalogue, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = catalogue.get("lama")
    assert not spec.availability().ready
    with pytest.raises(ModelUnavailableError) as raised:
        LamaEngine.load(spec)
    message = str(raised.value)
    assert "python -m core download lama" in message and "HF_HUB_OFFLINE" in message and "/" not in message


# ---------------------------------------------------------------------------------------------
# Through the real Studio


@pytest.fixture
def studio(catalogue, tmp_path):
    from core.pool import ModelPool
    from core.runner import Studio
    from core.store import ResultStore

    return Studio(catalogue, ModelPool(1), ResultStore(tmp_path / "store", 1 << 30))


@pytest.mark.parametrize("model_id", ["tiny-lama", "tiny-lama-unit"])
def test_studio_changes_only_masked_pixels(studio, catalogue, photo_and_mask, model_id):
    photo, mask = photo_and_mask
    steps = StepLog()
    result = studio.inpaint(_request(model_id, photo, mask, mask_blur=0), steps)
    out = np.asarray(result.images[0])
    assert result.images[0].size == photo.size
    hole = np.asarray(mask) > 0
    assert np.array_equal(out[~hole], np.asarray(photo)[~hole])
    assert np.abs(out[hole].astype(np.int16) - np.asarray(photo, np.int16)[hole]).mean() > 20
    assert steps.steps[-1] == (1, 1)
    source = result.parameters["model_source"]
    assert source == catalogue.get(model_id).source and "/" not in source  # names the file, not the server's folders


@pytest.mark.parametrize("model_id", ["tiny-lama", "tiny-lama-unit"])
def test_the_engine_contract_suite(studio, astronaut, model_id):
    """The suite every engine passes (tests/test_engine_contract.py), on both exports."""
    mask = Image.new("L", astronaut.size, 0)
    ImageDraw.Draw(mask).ellipse((180, 150, 300, 250), fill=255)
    contract.test_inpaint_contract(studio, (astronaut, mask), model_id)
    contract.test_inpaint_cancel_stops_early_and_caches_nothing(studio, (astronaut, mask), model_id)
    for changes in ({"strength": 0.0}, {"seed": -1}, {"num_inference_steps": 0}, {"mask_blur": -3}):
        studio.pool.clear()
        contract.test_inpaint_bad_parameters_refused_before_any_model_loads(studio, (astronaut, mask), model_id, changes)


def test_studio_same_input_same_pixels_and_cached(studio, photo_and_mask, catalogue, tmp_path):
    from core.pool import ModelPool
    from core.runner import Studio

    photo, mask = photo_and_mask
    first = studio.inpaint(_request("tiny-lama", photo, mask))
    fresh = Studio(catalogue, ModelPool(1), None).inpaint(_request("tiny-lama", photo, mask))
    assert not fresh.cached and np.array_equal(np.asarray(fresh.images[0]), np.asarray(first.images[0]))
    hit = studio.inpaint(_request("tiny-lama", photo, mask))
    assert hit.cached and hit.pngs == first.pngs


def test_studio_cancel_caches_nothing(studio, photo_and_mask):
    photo, mask = photo_and_mask
    prepared = studio.prepare(_request("tiny-lama", photo, mask))
    assert prepared.total_steps == 1
    with pytest.raises(CancelledError):
        studio.run(prepared, StepLog(cancel_at=0))
    assert studio.cached(prepared) is None


class RecordingEngine:
    """The real engine, noting the size of every region the runner hands it and the time it took."""

    def __init__(self, engine):
        self._engine, self.spec = engine, engine.spec
        self.sizes: list[tuple[int, int]] = []
        self.seconds: list[float] = []

    def inpaint(self, image, mask, request, report):
        self.sizes.append(image.size)
        started = time.perf_counter()
        try:
            return self._engine.inpaint(image, mask, request, report)
        finally:
            self.seconds.append(time.perf_counter() - started)

    def text_to_image(self, request, report):
        return self._engine.text_to_image(request, report)

    def close(self):
        self._engine.close()


@pytest.mark.slow
def test_studio_on_a_large_photo_runs_the_model_on_the_region_around_the_mask(catalogue, astronaut, capsys):
    from core.pool import ModelPool
    from core.runner import Studio

    engines: list[RecordingEngine] = []

    def recording_loader(spec):
        engines.append(RecordingEngine(load_engine(spec)))
        return engines[-1]

    def timed(photo, mask):
        studio = Studio(catalogue, ModelPool(1, loader=recording_loader), None)
        studio.inpaint(_request("tiny-lama", photo, mask))  # warm: load the model
        started = time.perf_counter()
        result = studio.inpaint(_request("tiny-lama", photo, mask, seed=8))
        return result, time.perf_counter() - started, engines[-1]

    small_mask = Image.new("L", astronaut.size, 0)
    ImageDraw.Draw(small_mask).ellipse((230, 110, 290, 170), fill=255)
    large = astronaut.resize((2048, 2048), Image.Resampling.LANCZOS)
    large_mask = Image.new("L", large.size, 0)
    ImageDraw.Draw(large_mask).ellipse((920, 440, 1160, 680), fill=255)

    small_result, small_s, small_engine = timed(astronaut, small_mask)
    large_result, large_s, large_engine = timed(large, large_mask)

    # The model saw a region of about its working size, not the 2048 x 2048 photo.
    assert large_result.images[0].size == (2048, 2048)
    assert large_engine.sizes and all(width * height <= 576 * 576 for width, height in large_engine.sizes)
    outside = _far_from(np.asarray(large_mask) > 0, 16)  # beyond the default feathering
    assert np.array_equal(np.asarray(large_result.images[0])[outside], np.asarray(large)[outside])
    small_model_s, large_model_s = small_engine.seconds[-1], large_engine.seconds[-1]
    with capsys.disabled():
        print(
            f"\nLaMa via Studio, 16x the pixels: whole run {large_s:.3f} s vs {small_s:.3f} s "
            f"(x{large_s / small_s:.2f}); model part {large_model_s:.3f} s vs {small_model_s:.3f} s "
            f"(x{large_model_s / small_model_s:.2f})"
        )
    assert large_model_s < 4 * small_model_s + 0.2  # the same work; the margin is for a shared machine


def _far_from(hole: np.ndarray, distance: int) -> np.ndarray:
    """Pixels more than `distance` away from any hole pixel (outside any feathering)."""
    import cv2

    grown = cv2.dilate(hole.astype(np.uint8), np.ones((2 * distance + 1, 2 * distance + 1), np.uint8))
    return grown == 0


def test_studio_refuses_the_hub_entry_offline(studio, photo_and_mask, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    photo, mask = photo_and_mask
    with pytest.raises(ModelUnavailableError, match="python -m core download lama"):
        studio.inpaint(_request("lama", photo, mask))
    assert studio.pool.resident() == []
