"""The OpenVINO path: the tiny offline pipeline's UNet converted inside the test (the route
core/engines/openvino.py takes), run through the real runner: same seed same pixels, cancel,
previews, an edit changes only masked pixels, cache keys differ from PyTorch's, and the
conversion is kept on disk (a second load converts nothing)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core import masks
from core.catalogue import Catalogue
from core.engines import engine_version, openvino
from core.engines.base import silent_reporter
from core.engines.diffusion import DiffusionEngine
from core.errors import CancelledError
from core.pool import ModelPool
from core.requests import GenerateRequest, InpaintRequest
from core.runner import Studio
from core.store import ResultStore
from tests.tiny_pipelines import write_catalogue

PROMPT = "a lighthouse at dusk"


@pytest.fixture(scope="module")
def ov_setup(tiny_pipeline_dirs, tiny_autoencoder, tmp_path_factory):
    """One conversion for the module: STUDIO_OPENVINO on, the IR kept in a module-wide cache folder."""
    root = tmp_path_factory.mktemp("openvino")
    saved = {name: os.environ.get(name) for name in ("STUDIO_OPENVINO", "STUDIO_DEVICE", "STUDIO_CACHE_DIR")}
    os.environ.update(STUDIO_OPENVINO="1", STUDIO_DEVICE="cpu", STUDIO_CACHE_DIR=str(root / "cache"))
    try:
        catalogue = Catalogue.load(write_catalogue(root / "models.toml", tiny_pipeline_dirs, tiny_vae=tiny_autoencoder))
        engine = DiffusionEngine.load(catalogue.get("tiny-sd"))
        yield catalogue, engine, root / "cache" / "openvino"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def ov(ov_setup, monkeypatch):
    catalogue, engine, ir_root = ov_setup
    monkeypatch.setenv("STUDIO_OPENVINO", "1")
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(ir_root.parent))  # where the module's conversion is kept
    return catalogue, engine, ir_root


def studio_of(catalogue, engine, store=None) -> Studio:
    return Studio(catalogue, ModelPool(1, loader=lambda spec: engine), store)


def generate(studio, report=silent_reporter, **fields):
    values = {"model": "tiny-sd", "prompt": PROMPT, "seed": 11, "width": 64, "height": 64, **fields}
    return studio.generate(GenerateRequest(**values), report)


def test_the_unet_runs_on_openvino_and_its_conversion_is_kept(ov):
    catalogue, engine, ir_root = ov
    assert engine.configuration.startswith(f"OpenVINO {openvino.precision()} UNet")
    assert all(parameter.numel() == 0 for parameter in engine._txt2img.unet.parameters())  # PyTorch's copy freed
    assert len(list(ir_root.glob("*/unet.xml"))) == 1


def test_same_seed_same_pixels_and_keys_apart_from_pytorch(ov, monkeypatch):
    catalogue, engine, _ = ov
    studio = studio_of(catalogue, engine)
    for decoder in ("fast", "full"):
        first, second = generate(studio, decoder=decoder), generate(studio, decoder=decoder)
        assert np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))
    spec = catalogue.get("tiny-sd")
    with_openvino = engine_version(spec)
    assert "-openvino-" in with_openvino and with_openvino.endswith(openvino.precision())
    assert first.parameters["engine"] == with_openvino
    monkeypatch.setenv("STUDIO_OPENVINO", "0")
    assert engine_version(spec) != with_openvino
    assert (
        studio.prepare(
            GenerateRequest(model="tiny-sd", prompt=PROMPT, seed=11, width=64, height=64, decoder="full")
        ).key
        != first.key
    )


def test_cancel_keeps_nothing(ov, tmp_path):
    catalogue, engine, _ = ov
    studio = studio_of(catalogue, engine, ResultStore(tmp_path / "store", 1 << 30))
    prepared = studio.prepare(
        GenerateRequest(model="tiny-sd", prompt=PROMPT, num_inference_steps=5, width=64, height=64)
    )
    seen = []

    def cancel_at_two(step, total, preview=None):
        seen.append(step)
        if step >= 2:
            raise CancelledError("cancelled")

    with pytest.raises(CancelledError):
        studio.run(prepared, cancel_at_two)
    assert seen[-1] == 2 and studio.cached(prepared) is None


def test_previews_come_during_the_run(ov):
    catalogue, engine, _ = ov
    previews = []
    generate(
        studio_of(catalogue, engine), lambda step, total, preview=None: previews.append(preview), num_inference_steps=3
    )
    rendered = [preview() for preview in previews if preview is not None]
    assert len(rendered) >= 3 and all(image.size == (64, 64) for image in rendered)


def test_an_edit_changes_only_the_masked_pixels(ov, astronaut):
    catalogue, engine, _ = ov
    mask = Image.new("L", astronaut.size, 0)
    ImageDraw.Draw(mask).ellipse((180, 150, 300, 250), fill=255)
    request = InpaintRequest(model="tiny-sd", image=astronaut, mask=mask, prompt="a red balloon", seed=5, mask_blur=6)
    result = studio_of(catalogue, engine).inpaint(request)
    out = np.asarray(result.images[0])
    outside = np.asarray(masks.feather(masks.threshold(mask), 6)) == 0
    assert np.array_equal(out[outside], np.asarray(astronaut)[outside])
    assert not np.array_equal(out[~outside], np.asarray(astronaut)[~outside])
    again = studio_of(catalogue, engine).inpaint(request)
    assert np.array_equal(np.asarray(again.images[0]), out)


def test_a_second_load_reads_the_kept_conversion(ov, monkeypatch):
    catalogue, engine, _ = ov

    def no_conversion(unet, ir):
        raise AssertionError("converted again")

    monkeypatch.setattr(openvino, "_convert", no_conversion)
    reloaded = DiffusionEngine.load(catalogue.get("tiny-sd"))
    studio = studio_of(catalogue, reloaded)
    assert np.array_equal(
        np.asarray(generate(studio).images[0]), np.asarray(generate(studio_of(catalogue, engine)).images[0])
    )


def test_a_latent_size_the_unet_cannot_halve_evenly_still_runs(ov):
    """72 px is a multiple of 8 (a valid size) but its 9x9 latent does not halve evenly through the UNet's
    downsampling: the OpenVINO path pads the latent to a size it can run and crops the result back."""
    catalogue, engine, _ = ov
    studio = studio_of(catalogue, engine)
    first, second = generate(studio, width=72, height=80), generate(studio, width=72, height=80)
    assert first.images[0].size == (72, 80)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))
