"""AUTOMATIC1111's /sdapi/v1 and OpenAI's /v1/images, driven by the real client libraries (`webuiapi`,
`openai`, unmodified) against the real app (`streamlit run Home.py`) on the tiny offline pipelines.

One server for the module, with a key set: every call authenticates (Basic for webuiapi, as A1111's
`--api-auth` clients do; Bearer for the OpenAI SDK), and the auth test checks what happens without.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import webuiapi
from PIL import Image

from tests.app_server import AppServer, running_app

REPO = Path(__file__).resolve().parents[1]
KEY = "client-apis-test-key"
BODY_CAP_MB = 4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_catalogue_file, tmp_path_factory) -> Iterator[AppServer]:
    env = {
        "STUDIO_MODELS_FILE": str(tiny_catalogue_file),
        "STUDIO_API_KEY": KEY,
        "STUDIO_MAX_BODY_MB": str(BODY_CAP_MB),
        "PYTHONPATH": str(REPO),
    }
    with running_app(tmp_path_factory.mktemp("client-apis"), env) as started:
        yield started


@pytest.fixture
def webui(server) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(baseurl=f"{server.url}/sdapi/v1", username="anyone", password=KEY)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as session:
        yield session


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def box_outside(size: tuple[int, int], box: tuple[int, int, int, int], margin: int) -> np.ndarray:
    keep = np.ones((size[1], size[0]), dtype=bool)
    left, top, right, bottom = box
    keep[max(0, top - margin) : bottom + margin, max(0, left - margin) : right + margin] = False
    return keep


def a1111_error(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "detail", "body", "errors"}, body
    assert "Traceback" not in body["detail"] and "\n" not in body["detail"]
    return body["detail"]


# -- AUTOMATIC1111 ----------------------------------------------------------------------------------


def test_webuiapi_txt2img_gives_a1111_info_and_the_same_pixels_for_the_same_seed(webui, http):
    asked = dict(prompt="a red fox in the snow", seed=7, steps=2, cfg_scale=7.5, width=64, height=64, batch_size=2)
    first = webui.txt2img(**asked, sampler_name="Euler a", alwayson_scripts={"ControlNet": {"args": []}})
    assert len(first.images) == 2 and first.images[0].size == (64, 64)
    info = first.info
    assert info["seed"] == 7 and info["all_seeds"] == [7, 8]
    assert info["sd_model_name"] == "tiny-sd" and info["sampler_name"] == "Euler a" and info["steps"] == 2
    assert info["prompt"] == asked["prompt"] and info["width"] == 64 and info["cfg_scale"] == 7.5
    hashes = {item["title"]: item["hash"] for item in webui.get_sd_models()}
    assert info["sd_model_hash"] == hashes["tiny-sd"]
    # infotexts are the text the PNGs carry
    assert info["infotexts"][0] == first.images[0].info["parameters"]
    assert "Seed: 7" in info["infotexts"][0] and info["cached"] is False

    again = webui.txt2img(**asked, sampler_name="k_euler_a")  # A1111's alias of the same sampler
    assert again.info["cached"] is True
    for one, other in zip(first.images, again.images, strict=True):
        assert np.array_equal(np.asarray(one), np.asarray(other))
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(first.images[1]))  # seeds 7 and 8

    # The same request through /api/v1 is a cache hit with the very same PNG bytes.
    same = {"model": "tiny-sd", "prompt": asked["prompt"], "seed": 7, "num_inference_steps": 2, "guidance_scale": 7.5,
            "width": 64, "height": 64, "num_images": 2, "scheduler": "Euler a"}  # fmt: skip
    native = http.post("/api/v1/generate", json=same).json()
    assert native["cached"] is True
    assert native["images"] == first.json["images"]


def test_an_openai_generation_is_a_cache_hit_through_a1111_and_its_url_serves_the_png(client, http):
    made = client.images.generate(
        model="tiny-sd",
        prompt="a lighthouse at dusk",
        size="64x64",
        response_format="b64_json",
        extra_body={"seed": 21},
    )
    assert len(made.data) == 1 and made.data[0].url is None and made.data[0].revised_prompt == "a lighthouse at dusk"
    png = base64.b64decode(made.data[0].b64_json)
    assert Image.open(io.BytesIO(png)).size == (64, 64)

    body = {"prompt": "a lighthouse at dusk", "seed": 21, "width": 64, "height": 64,
            "override_settings": {"sd_model_checkpoint": "tiny-sd"}}  # fmt: skip
    a1111 = http.post("/sdapi/v1/txt2img", json=body)
    assert a1111.status_code == 200, a1111.text
    assert a1111.json()["images"] == [made.data[0].b64_json]
    assert '"cached": true' in a1111.json()["info"]

    linked = client.images.generate(model="tiny-sd", prompt="a lighthouse at dusk", size="64x64", response_format="url",
                                    extra_body={"seed": 21})  # fmt: skip
    assert linked.data[0].b64_json is None
    fetched = httpx.get(linked.data[0].url, timeout=30)  # no key: the link itself is the permission
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert fetched.content == png
    assert httpx.get(linked.data[0].url.replace(".png", "x.png"), timeout=30).status_code == 404

    assert [model.id for model in client.models.list()] == ["tiny-sd", "tiny-sd-inpaint"]
    assert client.models.retrieve("tiny-sd").owned_by == "canvas-studio"
    both = client.images.generate(model="dall-e-3", prompt="a lighthouse at dusk", size="64x64")  # our default model
    assert both.data[0].b64_json and both.data[0].url


def test_models_are_listed_and_switched_per_server(webui, http, astronaut):
    titles = webui.util_get_model_names()
    assert titles == ["tiny-sd", "tiny-sd-inpaint"]  # the generative models that can run here
    listed = {item["title"]: item for item in webui.get_sd_models()}
    assert set(listed["tiny-sd"]) >= {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert "Euler a" in webui.util_get_sampler_names() and "karras" in webui.util_get_scheduler_names()
    assert webui.get_scripts() == {"txt2img": [], "img2img": []}
    assert webui.get_cmd_flags()["api"] is True
    assert webui.get_upscalers() == [] and webui.get_sd_vae() == [] and webui.get_loras() == []
    assert webui.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert webui.custom_get("internal/ping") == {}  # what SillyTavern checks
    webui.refresh_checkpoints()
    assert webui.util_get_current_model() == "tiny-sd"
    try:
        webui.util_set_model("tiny-sd-inpaint")
        options = webui.get_options()
        assert options["sd_model_checkpoint"] == "tiny-sd-inpaint"
        webui.set_options(options)  # a client posting the whole dict back is fine
        # The server's model now serves requests that name none; it cannot make images from text.
        refused = http.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "width": 64, "height": 64})
        assert refused.status_code == 400 and "cannot generate images from text" in a1111_error(refused)
        small = astronaut.resize((128, 128))
        edited = webui.img2img(images=[small], prompt="a cat", seed=5, steps=2, denoising_strength=1.0)
        assert edited.info["sd_model_name"] == "tiny-sd-inpaint" and edited.image.size == (128, 128)
    finally:
        webui.util_set_model("tiny-sd")
    assert webui.util_get_current_model() == "tiny-sd"
    unknown = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "no-such-model"})
    assert unknown.status_code == 404 and a1111_error(unknown)


def test_masked_img2img_changes_only_the_masked_pixels(webui, astronaut):
    box = (200, 120, 300, 220)
    mask = Image.new("L", astronaut.size, 0)
    mask.paste(255, box)
    result = webui.img2img(
        images=[astronaut], mask_image=mask, prompt="a golden helmet", seed=3, steps=4, denoising_strength=1.0,
        mask_blur=4, inpaint_full_res=True, inpaint_full_res_padding=16, width=512, height=512,
        override_settings={"sd_model_checkpoint": "tiny-sd-inpaint"},
    )  # fmt: skip
    after, before = np.asarray(result.image.convert("RGB")), np.asarray(astronaut)
    assert after.shape == before.shape
    keep = box_outside(astronaut.size, box, margin=3 * 4 + 1)  # beyond the feathering (sigma = mask_blur)
    assert np.array_equal(after[keep], before[keep])  # byte-identical outside the feathered mask
    assert not np.array_equal(after[~keep], before[~keep])
    assert result.info["infotexts"][0] == result.image.info["parameters"]
    assert "Mask blur: 4" in result.info["infotexts"][0]


def test_progress_shows_a_preview_while_a_job_runs_and_interrupt_stops_it(webui):
    outcome: dict[str, object] = {}

    def long_job() -> None:
        try:
            outcome["result"] = webui.txt2img(prompt="a long job", seed=1, steps=150, width=512, height=512)
        except RuntimeError as error:
            outcome["error"] = error.args

    worker = threading.Thread(target=long_job)
    worker.start()
    deadline = time.monotonic() + 120
    while True:
        progress = webui.get_progress()
        if progress["current_image"] and progress["state"]["sampling_step"] >= 1:
            break
        assert worker.is_alive() and time.monotonic() < deadline, (progress, outcome)
        time.sleep(0.05)
    assert progress["state"]["job_count"] == 1 and progress["state"]["sampling_steps"] == 150
    assert 0 < progress["progress"] < 1
    preview = Image.open(io.BytesIO(base64.b64decode(progress["current_image"])))
    assert preview.size == (64, 64)  # the latents' size: 512 / 8
    assert webui.interrupt() == {}
    worker.join(timeout=60)
    assert not worker.is_alive()
    status, text = outcome["error"]
    assert status == 409 and "cancelled" in text
    idle = webui.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None


def test_auth_takes_bearer_or_basic_with_the_key_as_password(server):
    url = f"{server.url}/sdapi/v1/options"
    missing = httpx.get(url)
    assert missing.status_code == 401 and a1111_error(missing)
    assert httpx.get(url, auth=("anyone", "wrong")).status_code == 401
    assert httpx.get(url, auth=("anyone", KEY)).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(f"{server.url}/api/v1/models", auth=("anyone", KEY)).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).images.generate(prompt="a cat")


def test_bad_input_is_answered_in_each_apis_own_shape(http, client, astronaut):
    too_odd = http.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "width": 100, "height": 64})
    assert too_odd.status_code == 400 and "multiple of 8" in a1111_error(too_odd)
    not_an_image = http.post("/sdapi/v1/img2img", json={"init_images": ["bm90IGFuIGltYWdl"], "prompt": "x"})
    assert not_an_image.status_code == 400 and a1111_error(not_an_image)
    wrong_type = http.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "steps": "many"})
    assert wrong_type.status_code == 422 and a1111_error(wrong_type)
    unknown_model = http.post(
        "/sdapi/v1/txt2img", json={"prompt": "a cat", "override_settings": {"sd_model_checkpoint": "nope"}}
    )
    assert unknown_model.status_code == 404 and a1111_error(unknown_model)

    with pytest.raises(openai.BadRequestError) as bad_size:
        client.images.generate(model="tiny-sd", prompt="a cat", size="huge")
    assert bad_size.value.param == "size"
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="no-such-model", prompt="a cat")
    with pytest.raises(openai.BadRequestError) as too_many:
        client.images.generate(model="tiny-sd", prompt="a cat", n=50)
    assert too_many.value.param == "n"
    opaque_mask = png_bytes(Image.new("RGB", astronaut.size, "white"))
    with pytest.raises(openai.BadRequestError) as no_alpha:
        client.images.edit(image=("photo.png", png_bytes(astronaut)), mask=("mask.png", opaque_mask), prompt="a cat",
                           model="tiny-sd-inpaint")  # fmt: skip
    assert "transparent" in no_alpha.value.message
    with pytest.raises(openai.APIStatusError) as too_big:
        client.images.edit(image=("big.png", b"\0" * (BODY_CAP_MB + 1) * 1024 * 1024), prompt="a cat")
    assert too_big.value.status_code == 413


def test_openai_edits_change_only_the_transparent_area_of_the_mask(client, astronaut):
    box = (150, 180, 260, 300)
    mask = Image.new("RGBA", astronaut.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), box)  # OpenAI's rule: fully transparent = edit here
    edited = client.images.edit(
        image=("photo.png", png_bytes(astronaut), "image/png"), mask=("mask.png", png_bytes(mask), "image/png"),
        prompt="a bunch of flowers", model="tiny-sd-inpaint", n=2, response_format="b64_json",
    )  # fmt: skip
    assert len(edited.data) == 2
    before = np.asarray(astronaut)
    # The whole marked area is repainted: the mask grows by the feather's reach (3 x 4), and the feather
    # (sigma 4) reaches as far again.
    keep = box_outside(astronaut.size, box, margin=2 * 3 * 4 + 1)
    outputs = [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(item.b64_json))).convert("RGB")) for item in edited.data
    ]
    for after in outputs:
        assert after.shape == before.shape and np.array_equal(after[keep], before[keep])
        assert not np.array_equal(after[~keep], before[~keep])
    assert not np.array_equal(outputs[0], outputs[1])  # two seeds

    whole = client.images.edit(image=("photo.png", png_bytes(astronaut.resize((128, 128)))), prompt="a painting",
                               model="tiny-sd-inpaint", response_format="b64_json")  # fmt: skip
    assert Image.open(io.BytesIO(base64.b64decode(whole.data[0].b64_json))).size == (128, 128)

    # No mask: the image's own transparent pixels are the area, filled opaque to its edge.
    holed = np.asarray(astronaut.convert("RGBA")).copy()
    holed[180:300, 150:260, 3] = 0
    filled = client.images.edit(image=("holed.png", png_bytes(Image.fromarray(holed))), prompt="a helmet",
                                model="tiny-sd-inpaint", response_format="b64_json", extra_body={"seed": 4})  # fmt: skip
    result = np.asarray(Image.open(io.BytesIO(base64.b64decode(filled.data[0].b64_json))))
    assert result.shape == holed.shape and (result[180:300, 150:260, 3] == 255).all()
    assert np.array_equal(result[keep], holed[keep])
