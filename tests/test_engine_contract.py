"""One contract, run against every engine through the real runner (as diffusers' common pipeline tests do).

Each engine: output size = input size, same seed -> same pixels, unmasked pixels byte-identical,
progress monotonic, cancel stops early and caches nothing, bad parameters refused before any model call.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from core import masks
from core.errors import BadParameterError, CancelledError
from core.pool import ModelPool
from core.provenance import read_parameters
from core.requests import GenerateRequest, InpaintRequest, image_seed
from core.runner import Studio
from core.store import ResultStore

INPAINT_ENGINES = ["opencv-telea", "opencv-ns", "tiny-sd", "tiny-sd-inpaint"]
TXT2IMG_ENGINES = ["tiny-sd"]


@pytest.fixture
def studio(tiny_catalogue, tmp_path):
    return Studio(tiny_catalogue, ModelPool(1), ResultStore(tmp_path / "store", 1 << 30))


@pytest.fixture(scope="module")
def photo_and_mask():
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse((180, 150, 300, 250), fill=255)
    return photo, mask


class StepLog:
    def __init__(self, cancel_at: int | None = None):
        self.steps: list[tuple[int, int]] = []
        self.cancel_at = cancel_at

    def __call__(self, step, total, preview=None):
        self.steps.append((step, total))
        if self.cancel_at is not None and step >= self.cancel_at:
            raise CancelledError("cancelled")


def _inpaint_request(model, photo, mask, **changes):
    values = {"model": model, "image": photo, "mask": mask, "prompt": "a red balloon", "seed": 1234, "mask_blur": 6}
    values.update(changes)
    return InpaintRequest(**values)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0])


@pytest.mark.parametrize("model", INPAINT_ENGINES)
def test_inpaint_contract(studio, photo_and_mask, model):
    photo, mask = photo_and_mask
    steps = StepLog()
    result = studio.inpaint(_inpaint_request(model, photo, mask), steps)
    out = result.images[0]
    # Output size and mode follow the input.
    assert out.size == photo.size and out.mode == photo.mode
    # Only masked pixels change: everything outside the feathered mask is byte-identical.
    feathered = np.asarray(masks.feather(masks.threshold(mask), 6))
    outside = feathered == 0
    assert np.array_equal(np.asarray(out)[outside], np.asarray(photo)[outside])
    assert not np.array_equal(np.asarray(out)[~outside], np.asarray(photo)[~outside])
    # Progress is monotonic and ends at its total.
    assert steps.steps and steps.steps[-1][0] == steps.steps[-1][1]
    assert [step for step, _ in steps.steps] == sorted(step for step, _ in steps.steps)
    # Same seed, same pixels (computed again, not from the store).
    studio.store.clear()
    again = studio.inpaint(_inpaint_request(model, photo, mask))
    assert not again.cached and np.array_equal(_pixels(again), _pixels(result))
    # And the second identical request is a cache hit with the same bytes.
    hit = studio.inpaint(_inpaint_request(model, photo, mask))
    assert hit.cached and hit.pngs == again.pngs


@pytest.mark.parametrize("model", INPAINT_ENGINES)
def test_inpaint_cancel_stops_early_and_caches_nothing(studio, photo_and_mask, model):
    photo, mask = photo_and_mask
    photo = ImageOps.mirror(photo)  # not the contract run's input: engines that ignore the steps would hit its result
    prepared = studio.prepare(_inpaint_request(model, photo, mask, num_inference_steps=6))
    assert studio.cached(prepared) is None
    steps = StepLog(cancel_at=0 if prepared.total_steps == 1 else 1)
    with pytest.raises(CancelledError):
        studio.run(prepared, steps)
    assert steps.steps[-1][0] < prepared.total_steps
    assert studio.cached(prepared) is None and prepared.key not in studio.store


@pytest.mark.parametrize("model", INPAINT_ENGINES)
@pytest.mark.parametrize(
    "changes", [{"strength": 0.0}, {"seed": -1}, {"num_inference_steps": 0}, {"mask_blur": -3}, {"guidance_scale": float("nan")}]
)
def test_inpaint_bad_parameters_refused_before_any_model_loads(studio, photo_and_mask, model, changes):
    photo, mask = photo_and_mask
    with pytest.raises(BadParameterError):
        studio.inpaint(_inpaint_request(model, photo, mask, **changes))
    assert studio.pool.resident() == []


@pytest.mark.parametrize("model", TXT2IMG_ENGINES)
def test_text_to_image_contract(studio, model):
    request = GenerateRequest(model=model, prompt="a lighthouse at dusk", seed=99, width=64, height=80, num_images=2)
    steps = StepLog()
    result = studio.generate(request, steps)
    assert [image.size for image in result.images] == [(64, 80), (64, 80)]
    # Schedulers such as PNDM run one extra step, so the total is what the pipeline really runs.
    assert steps.steps[-1][0] == steps.steps[-1][1] >= result.parameters["num_inference_steps"]
    studio.store.clear()
    again = studio.generate(request)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(again.images, result.images, strict=True))
    for index, png in enumerate(again.pngs):  # each PNG records its own seed, as a run of one: it replays alone
        recorded = read_parameters(png)
        assert (recorded["seed"], recorded["num_images"]) == (image_seed(99, index), 1)
        assert f"Seed: {image_seed(99, index)}," in Image.open(io.BytesIO(png)).text["parameters"]
    other_seed = studio.generate(GenerateRequest(model=model, prompt="a lighthouse at dusk", seed=100, width=64, height=80))
    assert not np.array_equal(np.asarray(other_seed.images[0]), np.asarray(result.images[0]))


@pytest.mark.parametrize("model", TXT2IMG_ENGINES)
def test_text_to_image_cancel_caches_nothing(studio, model):
    prepared = studio.prepare(GenerateRequest(model=model, prompt="a lighthouse", num_inference_steps=8, width=64, height=64))
    steps = StepLog(cancel_at=1)
    with pytest.raises(CancelledError):
        studio.run(prepared, steps)
    assert max(step for step, _ in steps.steps) == 1
    assert prepared.key not in studio.store


def test_results_survive_pickling_as_their_pngs(studio, photo_and_mask):
    """Streamlit's st.cache_data copies results by pickling them."""
    import pickle

    photo, mask = photo_and_mask
    result = studio.inpaint(_inpaint_request("opencv-ns", photo, mask))
    copy = pickle.loads(pickle.dumps(result))
    assert copy.pngs == result.pngs and copy.parameters == result.parameters
    assert np.array_equal(np.asarray(copy.images[0]), np.asarray(result.images[0]))
