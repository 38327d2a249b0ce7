"""Request validation refuses bad values with the offending value, before any model is touched."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from core.catalogue import Catalogue
from core.errors import BadParameterError
from core.requests import MAX_PROMPT_CHARS, GenerateRequest, InpaintRequest


@pytest.fixture(scope="module")
def turbo():
    return Catalogue.load().get("sd-turbo")


@pytest.fixture(scope="module")
def inpainter():
    return Catalogue.load().get("sd15-inpainting")


@pytest.mark.parametrize(
    "changes, shown",
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 10_000}, "10000"),
        ({"guidance_scale": math.nan}, "nan"),
        ({"guidance_scale": math.inf}, "inf"),
        ({"guidance_scale": -1.0}, "-1.0"),
        ({"seed": -1}, "-1"),
        ({"seed": 2**64}, str(2**64)),
        ({"seed": 1.5}, "1.5"),
        ({"seed": True}, "True"),
        ({"num_images": 0}, "num_images"),
        ({"num_images": 100}, "100"),
        ({"width": 513}, "multiple of 8"),
        ({"width": 4096, "height": 4096}, "4096"),
        ({"height": 8}, "height"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "characters"),
        ({"scheduler": "Magic"}, "Magic"),
    ],
)
def test_bad_generate_parameters_are_refused(turbo, changes, shown):
    with pytest.raises(BadParameterError) as raised:  # when built (bounds, types) or checked (the model's limits)
        GenerateRequest(**{"model": "sd-turbo", "prompt": "a cat", **changes}).validate(turbo)
    assert shown in str(raised.value)


def test_defaults_come_from_the_model_and_the_seed_is_drawn_once(turbo):
    request = GenerateRequest(model="sd-turbo", prompt="a cat").with_defaults(turbo)
    assert (request.num_inference_steps, request.guidance_scale, request.width) == (2, 0.0, 512)
    assert 0 <= request.seed < 2**32
    assert request.with_defaults(turbo).seed == request.seed
    request.validate(turbo)


def test_inpaint_only_model_refuses_text_to_image(inpainter):
    with pytest.raises(BadParameterError, match="cannot generate"):
        GenerateRequest(model="sd15-inpainting", prompt="a cat").validate(inpainter)


def _inpaint(**changes) -> InpaintRequest:
    image = Image.new("RGB", (64, 48))
    values = {"model": "sd15-inpainting", "image": image, "mask": Image.new("L", (64, 48), 255), **changes}
    return InpaintRequest(**values)


@pytest.mark.parametrize(
    "changes, shown",
    [
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.5}, "1.5"),
        ({"mask_blur": -1}, "mask_blur"),
        ({"mask_grow": 10_000}, "mask_grow"),
        ({"padding": -5}, "padding"),
        ({"invert_mask": "yes"}, "invert_mask"),
        ({"mask": Image.new("L", (10, 10))}, "mask is 10x10"),
        ({"mask": Image.new("RGB", (64, 48))}, "greyscale"),
        ({"image": None}, "image"),
        ({"num_inference_steps": 2, "strength": 0.3}, "at least 1"),
    ],
)
def test_bad_inpaint_parameters_are_refused(inpainter, changes, shown):
    with pytest.raises(BadParameterError) as raised:
        _inpaint(**changes).validate(inpainter)
    assert shown in str(raised.value)


def test_inpaint_parameters_exclude_pixels_and_are_json_ready(inpainter):
    import json

    parameters = _inpaint(seed=7).with_defaults(inpainter).parameters()
    assert "image" not in parameters and "mask" not in parameters
    assert json.loads(json.dumps(parameters))["seed"] == 7


def test_engines_that_ignore_seeds_record_zero_so_repeats_share_a_cache_key():
    opencv = Catalogue.load().get("opencv-ns")
    with_seed = _inpaint(model="opencv-ns", seed=5).with_defaults(opencv)
    without = _inpaint(model="opencv-ns").with_defaults(opencv)
    assert with_seed.seed == without.seed == 0
    with pytest.raises(BadParameterError):  # still validated before normalising
        _inpaint(model="opencv-ns", seed=-1).validate(opencv)
