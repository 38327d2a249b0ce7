"""The A1111 and OpenAI shapes, in process and without a model: names, masks, sizes, counts, error bodies.

The real clients against the running app are in tests/test_client_apis.py; these pin the mapping rules.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from core.api import a1111_shapes as a1111
from core.api import openai_routes, openai_shapes
from core.api.errors import Failure
from core.errors import BadMaskError, BadParameterError, UnknownModelError
from core.requests import WHOLE_IMAGE_STRENGTH, GenerateRequest, InpaintRequest, default
from core.settings import ImageLimits


@pytest.mark.parametrize(
    ("sampler", "schedule", "ours", "warned"),
    [
        ("Euler a", None, "Euler a", False),
        ("k_euler_a", "automatic", "Euler a", False),
        ("DPM++ 2M Karras", None, "DPM++ 2M Karras", False),  # A1111 before 1.9
        ("DPM++ 2M", "karras", "DPM++ 2M Karras", False),  # A1111 1.9 and later
        ("dpm++ 2m", "Karras", "DPM++ 2M Karras", False),
        ("PLMS", None, "PNDM", False),
        ("Euler", "karras", "Euler", True),  # no Karras Euler here: the sampler, its own schedule, a warning
        ("DPM++ 2M", "exponential", "DPM++ 2M", True),
        ("Heun", None, None, True),  # not here: the model's default, a warning
        (None, None, None, False),
        ("", "automatic", None, False),
    ],
)
def test_a1111_samplers_map_to_ours_and_what_we_lack_falls_back_with_a_warning(sampler, schedule, ours, warned):
    mapped, warnings = a1111.scheduler_for(sampler, schedule)
    assert mapped == ours and bool(warnings) is warned


def test_every_listed_sampler_maps_to_one_of_our_schedulers_and_back():
    from core.requests import SCHEDULERS

    for item in a1111.sampler_list():
        ours, _ = a1111.scheduler_for(item["name"], None)
        assert ours in SCHEDULERS and a1111.a1111_sampler(ours) == (item["name"], "Automatic")
    assert a1111.a1111_sampler("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")


def test_checkpoint_names_as_a1111_clients_send_them(tiny_catalogue):
    spec = tiny_catalogue.get("tiny-sd")
    digest = a1111.model_hash(spec)
    for name in ("tiny-sd", "TINY-SD", f"tiny-sd [{digest[:10]}]", "tiny-sd.safetensors", "Tiny SD (test)"):
        assert a1111.find_model(tiny_catalogue, name).id == "tiny-sd", name
    with pytest.raises(UnknownModelError):
        a1111.find_model(tiny_catalogue, "v1-5-pruned-emaonly.safetensors [6ce0161689]")


def test_txt2img_fields_become_one_request_and_counts_are_checked(tiny_catalogue):
    spec = tiny_catalogue.get("tiny-sd")
    body = a1111.Txt2ImgBody(prompt="a cat", seed=-1, batch_size=2, n_iter=2, steps=3, cfg_scale=5, alwayson_scripts={})
    request, warnings = a1111.generate_request(body, spec)
    assert (request.seed, request.num_images, request.num_inference_steps, request.guidance_scale) == (None, 4, 3, 5)
    assert request.width is None and warnings == []  # absent sizes: the model's own
    with pytest.raises(BadParameterError, match="batch_size x n_iter"):
        a1111.generate_request(a1111.Txt2ImgBody(prompt="a cat", batch_size=5), spec)
    with pytest.raises(BadParameterError, match="seed"):
        a1111.generate_request(a1111.Txt2ImgBody(prompt="a cat", seed=-2), spec)


def test_img2img_without_a_mask_edits_the_whole_image_and_numbers_seeds_as_a1111(tiny_catalogue):
    spec = tiny_catalogue.get("tiny-sd-inpaint")
    image = Image.new("RGB", (96, 64), "grey")
    body = a1111.Img2ImgBody(init_images=["x"], prompt="a cat", seed=10, batch_size=3, inpainting_mask_invert=1)
    requests, _ = a1111.inpaint_requests(body, spec, image, None)
    assert [request.seed for request in requests] == [10, 11, 12]
    first = requests[0]
    assert first.whole_image and not first.invert_mask and first.strength == a1111.DEFAULT_DENOISING_STRENGTH
    assert first.mask.getextrema() == (255, 255) and first.mask.size == image.size
    masked, _ = a1111.inpaint_requests(
        a1111.Img2ImgBody(init_images=["x"], inpaint_full_res=True, inpaint_full_res_padding=8, mask_blur=2),
        spec,
        image,
        Image.new("L", image.size, 255),
    )
    assert not masked[0].whole_image and (masked[0].padding, masked[0].mask_blur) == (8, 2)


def test_what_a_client_leaves_out_takes_the_request_schemas_defaults(tiny_catalogue):
    """The client bodies keep their own shapes, but a field a client omits gets core/requests.py's default
    (read from the schema, not a copy), and whole-image edits one strength on both surfaces."""
    spec, image = tiny_catalogue.get("tiny-sd-inpaint"), Image.new("RGB", (96, 64), "grey")
    masked, _ = a1111.inpaint_requests(a1111.Img2ImgBody(init_images=["x"]), spec, image, Image.new("L", (96, 64), 255))
    for name in ("mask_blur", "padding", "mask_grow", "num_inference_steps", "guidance_scale"):
        assert getattr(masked[0], name) == default(InpaintRequest, name), name
    whole_a1111, _ = a1111.inpaint_requests(a1111.Img2ImgBody(init_images=["x"]), spec, image, None)
    whole_openai = openai_shapes.edit_requests(spec, image, None, "a cat", 1)
    assert whole_a1111[0].strength == whole_openai[0].strength == WHOLE_IMAGE_STRENGTH
    generated = openai_shapes.generate_request(openai_shapes.GenerationBody(prompt="a cat"), tiny_catalogue.get("tiny-sd"))
    assert generated.num_images == default(GenerateRequest, "num_images")
    assert (generated.width, generated.num_inference_steps) == (None, None)  # the model's own, from its entry


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_openai_masks_mark_the_fully_transparent_pixels():
    image = Image.new("RGB", (64, 64), "white")
    mask = Image.new("RGBA", (64, 64), (255, 255, 255, 255))
    mask.paste((0, 0, 0, 0), (8, 8, 24, 24))
    mask.paste((0, 0, 0, 1), (40, 40, 48, 48))  # nearly transparent is not transparent
    ours = openai_shapes.edit_mask(_png(mask), image, ImageLimits())
    assert ours.getpixel((10, 10)) == 255 and ours.getpixel((44, 44)) == 0 and ours.getpixel((60, 2)) == 0
    with pytest.raises(BadMaskError, match="transparent"):
        openai_shapes.edit_mask(_png(Image.new("RGB", (64, 64), "black")), image, ImageLimits())
    assert openai_shapes.edit_mask(None, image, ImageLimits()) is None  # opaque image, no mask: all of it
    holed = mask.copy()  # no mask file: the image's own transparent pixels
    assert openai_shapes.edit_mask(None, holed, ImageLimits()).getpixel((10, 10)) == 255


def test_openai_sizes_counts_and_model_names(tiny_catalogue):
    assert openai_shapes.parse_size("512x768") == (512, 768) and openai_shapes.parse_size("auto") is None
    with pytest.raises(openai_shapes.ParameterError) as bad:
        openai_shapes.parse_size("large")
    assert bad.value.param == "size"
    spec = tiny_catalogue.get("tiny-sd")
    assert openai_shapes.parse_n(None, spec) == 1
    with pytest.raises(openai_shapes.ParameterError):
        openai_shapes.parse_n(spec.max_images + 1, spec)
    assert openai_shapes.resolve_model(tiny_catalogue, "dall-e-3", "txt2img").id == "tiny-sd"
    assert openai_shapes.resolve_model(tiny_catalogue, None, "inpaint").id == "tiny-sd"
    with pytest.raises(openai_shapes.ParameterError):
        openai_shapes.resolve_model(tiny_catalogue, "tiny-sd-inpaint", "txt2img")
    with pytest.raises(UnknownModelError):
        openai_shapes.resolve_model(tiny_catalogue, "stable-diffusion-xyz", "txt2img")


def test_openai_error_bodies_have_openais_shape_and_statuses():
    response = openai_routes.render_error(Failure(422, "invalid_request", "n: not a number", param="n"))
    assert response.status_code == 400 and response.headers["x-should-retry"] == "false"
    assert json.loads(response.body) == {
        "error": {
            "message": "n: not a number",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_request",
        }
    }
    busy = openai_routes.render_error(Failure(429, "busy", "the studio is busy", {"Retry-After": "7"}))
    assert busy.status_code == 429 and "x-should-retry" not in busy.headers and busy.headers["retry-after"] == "7"
    assert (
        json.loads(openai_routes.render_error(Failure(401, "unauthorized", "no key")).body)["error"]["code"]
        == "invalid_api_key"
    )


@pytest.fixture
def routes_client(tiny_catalogue, fresh_services):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from core.api import api_routes

    return TestClient(Starlette(routes=api_routes()))


def _png_b64(image: Image.Image) -> str:
    import base64

    return base64.b64encode(_png(image)).decode("ascii")


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/sdapi/v1/txt2img", {"prompt": "a cat", "steps": 0}, 400, "steps must be"),
        ("/sdapi/v1/txt2img", {"prompt": "a cat", "cfg_scale": -1}, 400, "cfg_scale must be"),
        ("/sdapi/v1/txt2img", {"prompt": "a cat", "seed": 2**40}, 400, "seed must be"),
        (
            "/sdapi/v1/txt2img",
            {"prompt": "a cat", "override_settings": {"sd_model_checkpoint": 5}},
            400,
            "sd_model_checkpoint",
        ),
        ("/sdapi/v1/txt2img", {"prompt": "a cat", "steps": "many"}, 422, "steps"),
        ("/sdapi/v1/img2img", {"init_images": ["@@"]}, 400, "init_images[0] is not valid base64"),
        ("/sdapi/v1/img2img", {"init_images": [], "prompt": "a cat"}, 422, "init_images"),
        ("/sdapi/v1/options", {"sd_model_checkpoint": ["a list"]}, 400, "sd_model_checkpoint"),
    ],
)
def test_bad_a1111_input_is_a_4xx_in_a1111s_shape_and_words(routes_client, path, body, status, says):
    response = routes_client.post(path, json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert set(answer) == {"error", "detail", "body", "errors"} and says in answer["detail"]


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"prompt": "a cat", "model": "tiny-sd", "size": "0x0"}, "size", "size must be a whole number"),
        ({"prompt": "a cat", "model": "tiny-sd", "size": "100x64"}, "size", "multiple of 8"),
        ({"prompt": "a cat", "model": "tiny-sd", "n": "many"}, "n", "n:"),
        ({"prompt": "a cat", "model": "tiny-sd", "seed": -1}, "seed", "seed must be"),
        ({"model": "tiny-sd"}, "prompt", "prompt"),
    ],
)
def test_bad_openai_input_is_a_400_naming_the_field(routes_client, body, param, says):
    response = routes_client.post("/v1/images/generations", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and says in error["message"] and error["type"] == "invalid_request_error"


def test_a_denoising_strength_out_of_range_is_named_as_a1111_names_it(routes_client):
    body = {"init_images": [_png_b64(Image.new("RGB", (64, 64), "grey"))], "prompt": "a cat", "denoising_strength": 0}
    response = routes_client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 400 and response.json()["detail"].startswith("denoising_strength must be")
