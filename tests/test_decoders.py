"""The fast decoder: a tiny AutoencoderTiny (TAESD's architecture) beside the model's own VAE.

Tiny offline pipelines with a tiny autoencoder built here: per decoder the same seed gives the
same pixels, the decoders give different pixels and different cache keys, the choice is in the
PNG's parameters, cancel keeps nothing, previews are real decodes, and an edit changes only the
masked pixels."""

from __future__ import annotations

import dataclasses
import io
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core import masks
from core.catalogue import Catalogue
from core.errors import BadParameterError, CancelledError, ModelUnavailableError
from core.pool import ModelPool
from core.provenance import read_parameters
from core.requests import GenerateRequest, InpaintRequest
from core.runner import Studio
from core.store import ResultStore
from tests.tiny_pipelines import write_catalogue

PROMPT = "a lighthouse at dusk"


@pytest.fixture(scope="module")
def fast_catalogue_file(tiny_pipeline_dirs, tiny_autoencoder, tmp_path_factory):
    return write_catalogue(
        tmp_path_factory.mktemp("fast-catalogue") / "models.toml", tiny_pipeline_dirs, tiny_vae=tiny_autoencoder
    )


@pytest.fixture
def catalogue(fast_catalogue_file, monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    return Catalogue.load(fast_catalogue_file)


@pytest.fixture
def studio(catalogue, tmp_path):
    return Studio(catalogue, ModelPool(1), ResultStore(tmp_path / "store", 1 << 30))


def generate(studio: Studio, **fields):
    values = {"model": "tiny-sd", "prompt": PROMPT, "seed": 7, "width": 64, "height": 64, **fields}
    return studio.generate(GenerateRequest(**values))


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0])


class Steps:
    def __init__(self, cancel_at: int | None = None):
        self.previews: list = []
        self.cancel_at = cancel_at

    def __call__(self, step, total, preview=None):
        if preview is not None:
            self.previews.append(preview)
        if self.cancel_at is not None and step >= self.cancel_at:
            raise CancelledError("cancelled")


def test_on_a_cpu_the_fast_decoder_is_the_default_and_is_recorded(studio):
    result = generate(studio)
    assert result.parameters["decoder"] == "fast"
    assert read_parameters(result.pngs[0])["decoder"] == "fast"
    assert "Decoder: fast" in Image.open(io.BytesIO(result.pngs[0])).text["parameters"]


def test_each_decoder_repeats_its_pixels_and_the_two_differ_in_pixels_and_key(catalogue):
    uncached = Studio(catalogue, ModelPool(1), None)  # every run really runs
    runs = {decoder: [generate(uncached, decoder=decoder) for _ in range(2)] for decoder in ("fast", "full")}
    for first, second in runs.values():
        assert np.array_equal(pixels(first), pixels(second))
    assert not np.array_equal(pixels(runs["fast"][0]), pixels(runs["full"][0]))
    assert runs["fast"][0].key != runs["full"][0].key
    # An explicit "fast" is the default's key: one result, not two.
    default = uncached.prepare(GenerateRequest(model="tiny-sd", prompt=PROMPT, seed=7, width=64, height=64))
    assert default.key == runs["fast"][0].key


def test_cancel_with_the_fast_decoder_keeps_nothing(studio):
    prepared = studio.prepare(
        GenerateRequest(model="tiny-sd", prompt=PROMPT, num_inference_steps=6, width=64, height=64)
    )
    with pytest.raises(CancelledError):
        studio.run(prepared, Steps(cancel_at=2))
    assert studio.cached(prepared) is None


def test_previews_are_decoded_by_the_tiny_autoencoder(studio):
    steps = Steps()
    studio.generate(
        GenerateRequest(model="tiny-sd", prompt=PROMPT, seed=3, width=96, height=64, num_inference_steps=3), steps
    )
    assert steps.previews
    image = steps.previews[-1]()
    # A real decode: the image's own size (the linear projection gives the latent size, 12x8).
    assert image.mode == "RGB" and image.size == (96, 64)


def test_an_edit_with_the_fast_decoder_changes_only_masked_pixels(studio, astronaut):
    mask = Image.new("L", astronaut.size, 0)
    ImageDraw.Draw(mask).ellipse((180, 150, 300, 250), fill=255)
    for model in ("tiny-sd", "tiny-sd-inpaint"):
        request = InpaintRequest(model=model, image=astronaut, mask=mask, prompt="a red balloon", seed=5, mask_blur=6)
        result = studio.inpaint(request)
        assert result.parameters["decoder"] == "fast"
        out = np.asarray(result.images[0])
        outside = np.asarray(masks.feather(masks.threshold(mask), 6)) == 0
        assert np.array_equal(out[outside], np.asarray(astronaut)[outside])
        assert not np.array_equal(out[~outside], np.asarray(astronaut)[~outside])
        full = studio.inpaint(dataclasses.replace(request, decoder="full"))
        assert not np.array_equal(np.asarray(full.images[0]), out)


def test_decoder_choices_that_cannot_work_are_refused_before_loading(studio, tiny_catalogue):
    with pytest.raises(BadParameterError, match="decoder must be one of fast, full"):
        studio.prepare(GenerateRequest(model="tiny-sd", prompt=PROMPT, decoder="medium"))
    plain = Studio(tiny_catalogue, ModelPool(1), None)  # the tiny pipelines without a tiny autoencoder
    with pytest.raises(BadParameterError, match="has no fast decoder; set tiny_vae"):
        plain.prepare(GenerateRequest(model="tiny-sd", prompt=PROMPT, decoder="fast"))
    assert plain.prepare(GenerateRequest(model="tiny-sd", prompt=PROMPT)).request.decoder == "full"
    photo, mask = Image.new("RGB", (64, 64)), Image.new("L", (64, 64), 255)
    with pytest.raises(BadParameterError, match="has no decoder to choose"):
        studio.prepare(InpaintRequest(model="opencv-telea", image=photo, mask=mask, decoder="full"))
    assert studio.prepare(InpaintRequest(model="opencv-telea", image=photo, mask=mask)).request.decoder is None


def test_a_gpu_defaults_to_the_full_decoder(catalogue, monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cuda")
    assert catalogue.get("tiny-sd").default_decoder() == "full"


def test_a_missing_tiny_autoencoder_defaults_to_full_and_says_how_to_get_the_fast_one(
    tiny_pipeline_dirs, tiny_autoencoder, tmp_path, monkeypatch
):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    moved = shutil.copytree(tiny_autoencoder, tmp_path / "taesd")
    catalogue = Catalogue.load(write_catalogue(tmp_path / "models.toml", tiny_pipeline_dirs, tiny_vae=moved))
    studio = Studio(catalogue, ModelPool(1), None)
    shutil.rmtree(moved)
    assert studio.prepare(GenerateRequest(model="tiny-sd", prompt=PROMPT)).request.decoder == "full"
    with pytest.raises(ModelUnavailableError, match="python -m core download tiny-sd, or choose the full decoder"):
        generate(studio, decoder="fast")


def test_the_generate_page_shows_the_decoder_choice_and_runs_with_it(fast_catalogue_file, monkeypatch, fresh_app):
    from core import services
    from tests.app_helpers import button, open_page, run_until

    monkeypatch.setenv("STUDIO_MODELS_FILE", str(fast_catalogue_file))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    at = open_page("1_Generate.py")
    decoder = at.radio(key="generate.tiny-sd.decoder")
    assert decoder.label == "Decoder" and list(decoder.options) == ["fast", "full"] and decoder.value == "fast"
    decoder.set_value("full")
    at.text_area(key="generate.prompt").set_value("a red cube")
    button(at, "Generate").click()
    run_until(at.run(), lambda at: bool(at.get("download_button")), what="a generated image")
    result = services.queue().result(at.session_state["generate.job"])
    assert result.parameters["decoder"] == "full"
