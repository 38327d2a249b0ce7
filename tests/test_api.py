"""The REST API, in process: every route and status code, on the OpenCV engines and the tiny pipelines.

The app under test is exactly what Home.py mounts (`api_routes()`), over fresh process-wide services
that read the environment each test sets.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time

import anyio
import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from core import services
from core.api import API_PREFIX, api_routes, create_api
from core.jobs import JobQueue
from core.provenance import read_parameters
from core.requests import image_parameters, image_seed
from tests.api_helpers import PATIENCE_S, wait_for_a_step, wait_for_status

LONG_JOB = {"model": "tiny-sd", "prompt": "a long job", "width": 512, "height": 512, "num_inference_steps": 150}


# -- helpers ---------------------------------------------------------------------------------------------


def encoded(image: Image.Image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decoded(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def outside(box: tuple[int, int, int, int], margin: int, size: tuple[int, int]) -> np.ndarray:
    """True where a pixel is farther than `margin` from `box` (beyond any feathering)."""
    keep = np.ones((size[1], size[0]), dtype=bool)
    left, top, right, bottom = box
    keep[max(0, top - margin) : bottom + margin, max(0, left - margin) : right + margin] = False
    return keep


def error_of(response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]["message"]
    assert "\n" not in message and "Traceback" not in message and "/tmp" not in message
    return response.status_code, body["error"]["code"], message


@pytest.fixture
def make_client():
    """`make_client()`: a TestClient of the app Home.py mounts, over services rebuilt from the
    environment as the test has set it."""
    made: list[TestClient] = []

    def make(**options) -> TestClient:
        services.reset()
        client = TestClient(Starlette(routes=api_routes()), **options)
        made.append(client)
        return client

    yield make
    services.reset()  # also cancels whatever a test left running


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def tiny_client(tiny_catalogue, make_client) -> TestClient:
    return make_client()


# -- health, models, schema ---------------------------------------------------------------------------------


def test_health_reports_version_device_queue_and_this_process(client):
    response = client.get(f"{API_PREFIX}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["version"] == __import__("core").__version__
    assert body["device"] == "cpu"
    assert body["queue_length"] == 0
    assert body["pid"] == os.getpid()


def test_models_lists_the_catalogue_with_availability(tiny_client):
    response = tiny_client.get(f"{API_PREFIX}/models")
    assert response.status_code == 200
    models = {model["id"]: model for model in response.json()}
    assert models["opencv-telea"] == {
        "id": "opencv-telea",
        "name": "OpenCV Telea (offline remove)",
        "tasks": ["inpaint"],
        "engine": "opencv",
        "available": True,
        "detail": "built in, works offline",
    }
    assert models["tiny-sd"]["available"] and models["tiny-sd"]["tasks"] == ["txt2img", "inpaint"]
    assert models["sd-turbo"]["available"] is False  # HF_HUB_OFFLINE, never downloaded here
    assert "python -m core download sd-turbo" in models["sd-turbo"]["detail"]
    assert all("/tmp" not in model["detail"] for model in models.values())


def test_openapi_schema_and_docs_are_served_under_the_prefix(client):
    schema = client.get(f"{API_PREFIX}/openapi.json").json()
    assert schema["servers"] == [{"url": API_PREFIX}]
    assert {"/health", "/models", "/generate", "/inpaint", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result"} <= set(
        schema["paths"]
    )
    generate_fields = schema["components"]["schemas"]["GenerateBody"]["properties"]
    assert {"model", "prompt", "negative_prompt", "num_inference_steps", "guidance_scale", "width", "height", "seed"} <= set(
        generate_fields
    )
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "security" not in schema["paths"]["/health"]["get"]
    assert schema["paths"]["/generate"]["post"]["security"] == [{"bearer": []}, {}]
    docs = client.get(f"{API_PREFIX}/docs")
    assert docs.status_code == 200 and f"{API_PREFIX}/openapi.json" in docs.text


def test_importing_the_api_loads_no_torch_diffusers_or_streamlit():
    code = "import sys, core.api; print(sorted({'torch', 'diffusers', 'streamlit'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=os.getcwd())
    assert out.stdout.strip() == "[]"


# -- synchronous calls -----------------------------------------------------------------------------------------


def test_inpaint_opencv_changes_only_the_masked_area_and_is_cached_the_second_time(client, astronaut):
    box = (200, 180, 280, 260)
    body = {
        "model": "opencv-ns",
        "image": encoded(astronaut),
        "mask": encoded(box_mask(astronaut.size, box)),
        "seed": 5,
        "mask_blur": 4,
    }
    first = client.post(f"{API_PREFIX}/inpaint", json=body)
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["cached"] is False and result["seed"] == 0  # OpenCV ignores seeds: recorded as 0
    out = decoded(result["image"])
    assert out.format == "PNG" and out.size == astronaut.size and out.mode == "RGB"
    before, after = np.asarray(astronaut), np.asarray(out)
    keep = outside(box, 3 * 4 + 1, astronaut.size)
    assert np.array_equal(after[keep], before[keep])  # byte-identical outside the feathered mask
    left, top, right, bottom = box
    assert not np.array_equal(after[top:bottom, left:right], before[top:bottom, left:right])
    carried = read_parameters(base64.b64decode(result["image"]))
    assert carried["model"] == "opencv-ns" and carried["seed"] == 0 and carried["mask_blur"] == 4
    assert result["parameters"].items() <= carried.items()  # the PNG also names the app and its version

    second = client.post(f"{API_PREFIX}/inpaint", json=body).json()
    assert second["cached"] is True
    assert second["image"] == result["image"]


def test_inpaint_accepts_jpeg_webp_data_urls_and_line_wrapped_base64(client, astronaut):
    mask = box_mask(astronaut.size, (10, 10, 60, 60))
    wrapped = "\n".join(encoded(astronaut, "JPEG")[i : i + 76] for i in range(0, len(encoded(astronaut, "JPEG")), 76))
    for image in (wrapped, "data:image/webp;base64," + encoded(astronaut, "WEBP")):
        response = client.post(
            f"{API_PREFIX}/inpaint", json={"model": "opencv-telea", "image": image, "mask": encoded(mask)}
        )
        assert response.status_code == 200, response.text
        assert decoded(response.json()["image"]).size == astronaut.size


def test_generate_on_tiny_sd_returns_pngs_with_parameters_then_a_cache_hit(tiny_client):
    body = {
        "model": "tiny-sd",
        "prompt": "a red fox in the snow",
        "negative_prompt": "blurry",
        "width": 64,
        "height": 64,
        "num_inference_steps": 2,
        "guidance_scale": 5.0,
        "seed": 1234,
        "num_images": 2,
        "scheduler": "Euler",
    }
    first = tiny_client.post(f"{API_PREFIX}/generate", json=body)
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["cached"] is False and result["seed"] == 1234
    assert len(result["images"]) == 2
    for index, text in enumerate(result["images"]):
        image = decoded(text)
        assert image.format == "PNG" and image.size == (64, 64)
        carried = read_parameters(base64.b64decode(text))
        # Each PNG records its own image as a run of one (seed + index), so it replays alone; it also names the app.
        assert image_parameters(result["parameters"], index).items() <= carried.items()
        assert carried["seed"] == image_seed(1234, index) and carried["num_images"] == 1
        assert carried["prompt"] == "a red fox in the snow" and carried["scheduler"] == "Euler"
    second = tiny_client.post(f"{API_PREFIX}/generate", json=body).json()
    assert second["cached"] is True and second["images"] == result["images"]


def test_generate_without_a_seed_reports_the_seed_it_drew(tiny_client):
    body = {"model": "tiny-sd", "prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}
    result = tiny_client.post(f"{API_PREFIX}/generate", json=body).json()
    assert isinstance(result["seed"], int) and result["parameters"]["seed"] == result["seed"]
    again = tiny_client.post(f"{API_PREFIX}/generate", json={**body, "seed": result["seed"]}).json()
    assert again["cached"] is True and again["images"] == result["images"]


def test_inpaint_on_the_tiny_inpainting_pipeline_keeps_unmasked_pixels(tiny_client, astronaut):
    box = (300, 100, 364, 164)
    body = {
        "model": "tiny-sd-inpaint",
        "image": encoded(astronaut),
        "mask": encoded(box_mask(astronaut.size, box)),
        "prompt": "a golden star",
        "num_inference_steps": 2,
        "strength": 1.0,
        "seed": 3,
        "mask_blur": 2,
    }
    response = tiny_client.post(f"{API_PREFIX}/inpaint", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    out = np.asarray(decoded(result["image"]))
    keep = outside(box, 3 * 2 + 1, astronaut.size)
    assert np.array_equal(out[keep], np.asarray(astronaut)[keep])
    assert read_parameters(base64.b64decode(result["image"]))["model"] == "tiny-sd-inpaint"
    assert tiny_client.post(f"{API_PREFIX}/inpaint", json=body).json()["cached"] is True


# -- asynchronous jobs ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_job_lifecycle_queue_progress_409_cancel_and_result(tiny_client):
    long = tiny_client.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 1})
    assert long.status_code == 202, long.text
    long_id = long.json()["id"]
    assert long.headers["location"] == f"{API_PREFIX}/jobs/{long_id}"
    assert long.json()["status"] in ("queued", "running")
    short_body = {"task": "generate", "model": "tiny-sd", "prompt": "a dot", "width": 64, "height": 64}
    short = tiny_client.post(f"{API_PREFIX}/jobs", json={**short_body, "num_inference_steps": 2, "seed": 2})
    assert short.status_code == 202
    short_id = short.json()["id"]

    assert error_of(tiny_client.get(f"{API_PREFIX}/jobs/{long_id}/result"))[:2] == (409, "job_not_done")
    running = wait_for_a_step(tiny_client, long_id)
    assert running["position"] == 0 and running["total"] >= 150  # the scheduler may add a warm-up step
    waiting = tiny_client.get(f"{API_PREFIX}/jobs/{short_id}").json()
    assert waiting["status"] == "queued" and waiting["position"] == 1
    status, code, message = error_of(tiny_client.get(f"{API_PREFIX}/jobs/{short_id}/result"))
    assert (status, code) == (409, "job_not_done") and "position 1" in message

    cancelled = tiny_client.delete(f"{API_PREFIX}/jobs/{long_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["cancel_requested"] or cancelled.json()["status"] == "cancelled"
    final = wait_for_status(tiny_client, long_id, {"cancelled", "done", "failed"})
    assert final["status"] == "cancelled" and final["step"] < final["total"]
    assert error_of(tiny_client.get(f"{API_PREFIX}/jobs/{long_id}/result"))[:2] == (409, "cancelled")

    done = wait_for_status(tiny_client, short_id, {"done", "failed", "cancelled"})
    assert done["status"] == "done" and done["step"] == done["total"] >= 2
    result = tiny_client.get(f"{API_PREFIX}/jobs/{short_id}/result")
    assert result.status_code == 200
    assert [decoded(text).size for text in result.json()["images"]] == [(64, 64)]
    # The same request again is served from the store at once.
    again = tiny_client.post(f"{API_PREFIX}/jobs", json={**short_body, "num_inference_steps": 2, "seed": 2}).json()
    assert again["status"] == "done"
    assert tiny_client.get(f"{API_PREFIX}/jobs/{again['id']}").json()["cached"] is True


def test_inpaint_job_result_has_the_synchronous_shape(client, astronaut):
    body = {"task": "inpaint", "model": "opencv-telea", "image": encoded(astronaut), "mask": encoded(box_mask(astronaut.size, (0, 0, 40, 40)))}
    job = client.post(f"{API_PREFIX}/jobs", json=body).json()
    assert wait_for_status(client, job["id"], {"done", "failed"})["status"] == "done"
    result = client.get(f"{API_PREFIX}/jobs/{job['id']}/result").json()
    assert set(result) == {"image", "seed", "cached", "parameters", "app_version", "warnings"}
    assert decoded(result["image"]).size == astronaut.size


def test_a_job_that_fails_reports_its_error_and_result_answers_with_it(client, astronaut):
    empty_mask = Image.new("L", astronaut.size, 0)
    body = {"task": "inpaint", "model": "opencv-telea", "image": encoded(astronaut), "mask": encoded(empty_mask)}
    job = client.post(f"{API_PREFIX}/jobs", json=body).json()
    status = wait_for_status(client, job["id"], {"done", "failed"})
    assert status["status"] == "failed" and status["error_code"] == "bad_mask" and "empty" in status["error"]
    assert error_of(client.get(f"{API_PREFIX}/jobs/{job['id']}/result"))[:2] == (400, "bad_mask")


# -- bad input: 400 (core's message) and 422 (schema) ------------------------------------------------------------------


def _bad_bodies(astronaut: Image.Image) -> list[tuple[str, object, int, str, str]]:
    image, mask = encoded(astronaut), encoded(box_mask(astronaut.size, (10, 10, 50, 50)))
    truncated = base64.b64encode(base64.b64decode(image)[:3000]).decode()
    inpaint = {"model": "opencv-ns", "image": image, "mask": mask}
    return [
        ("/inpaint", {**inpaint, "image": "not base64 at all!"}, 400, "bad_image", "base64"),
        ("/inpaint", {**inpaint, "image": base64.b64encode(b"hello, world").decode()}, 400, "bad_image", "unsupported image"),
        ("/inpaint", {**inpaint, "image": truncated}, 400, "bad_image", "truncated"),
        ("/inpaint", {**inpaint, "image": ""}, 400, "bad_image", "empty"),
        ("/inpaint", {**inpaint, "mask": "%%%"}, 400, "bad_mask", "base64"),
        ("/inpaint", {**inpaint, "mask": encoded(Image.new("L", astronaut.size, 0))}, 400, "bad_mask", "empty"),
        ("/inpaint", {**inpaint, "mask": encoded(Image.new("L", (100, 20), 255))}, 400, "bad_mask", "aspect"),
        ("/inpaint", {**inpaint, "strength": 0.0}, 400, "bad_parameter", "strength"),
        ("/inpaint", {**inpaint, "padding": -1}, 400, "bad_parameter", "padding"),
        ("/inpaint", {**inpaint, "seed": -1}, 400, "bad_parameter", "seed"),
        ("/inpaint", {**inpaint, "seed": 2**64}, 400, "bad_parameter", "seed"),
        ("/generate", b'{"model": "sd-turbo", "prompt": "x", "guidance_scale": NaN}', 400, "bad_parameter", "guidance_scale"),
        ("/generate", {"model": "sd-turbo", "prompt": "  "}, 400, "bad_parameter", "prompt"),
        ("/generate", {"model": "sd-turbo", "prompt": "x", "width": 100}, 400, "bad_parameter", "multiple of 8"),
        ("/generate", {"model": "sd-turbo", "prompt": "x", "num_images": 0}, 400, "bad_parameter", "num_images"),
        ("/generate", {"model": "sd-turbo", "prompt": "x", "scheduler": "Magic"}, 400, "bad_parameter", "scheduler"),
        ("/generate", {"model": "opencv-ns", "prompt": "x"}, 400, "bad_parameter", "cannot generate"),
        ("/generate", {"model": "sd-turbo", "prompt": "x", "steps": 3}, 422, "invalid_request", "steps: unknown field"),
        ("/generate", {"model": "sd-turbo", "prompt": "x", "seed": "42"}, 422, "invalid_request", "seed"),
        ("/generate", {"model": "sd-turbo", "prompt": "x", "num_inference_steps": True}, 422, "invalid_request", "num_inference_steps"),
        ("/generate", {"model": "sd-turbo", "prompt": "x", "num_inference_steps": 2.5}, 422, "invalid_request", "num_inference_steps"),
        ("/generate", {"prompt": "x"}, 422, "invalid_request", "model"),
        ("/generate", b'{"model": "sd-turbo", ', 422, "invalid_request", "not valid JSON"),
        ("/generate", b"", 422, "invalid_request", "body is missing"),
        ("/generate", [1, 2], 422, "invalid_request", "body"),
        ("/inpaint", {"model": "opencv-ns", "image": image}, 422, "invalid_request", "mask"),
        ("/jobs", {"model": "opencv-ns", "image": image, "mask": mask}, 422, "invalid_request", "task must be"),
        ("/jobs", {"task": "paint", **inpaint}, 422, "invalid_request", "task must be"),
        ("/jobs", {"task": "generate", **inpaint}, 422, "invalid_request", "unknown field"),
    ]


def test_bad_input_is_refused_with_the_right_status_code_and_one_line(client, astronaut):
    for path, body, status, code, fragment in _bad_bodies(astronaut):
        if isinstance(body, bytes):
            response = client.post(API_PREFIX + path, content=body, headers={"content-type": "application/json"})
        else:
            response = client.post(API_PREFIX + path, json=body)
        got_status, got_code, message = error_of(response)
        assert (got_status, got_code) == (status, code), (path, body if len(str(body)) < 200 else "...", message)
        assert fragment in message, (fragment, message)
    assert client.get(f"{API_PREFIX}/health").status_code == 200  # still serving


def test_bad_input_wins_over_an_unavailable_model(client):
    # sd-turbo is not downloaded here: a bad request still gets its 400, a good one the 503.
    assert error_of(client.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "x", "seed": -5}))[0] == 400
    assert error_of(client.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "x", "seed": 5}))[0] == 503


# -- 404 ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["nope", "/etc/passwd", "../x", "..", "stabilityai/sd-turbo", "C:\\Windows\\x", "tiny-sd", "~/models", ""]
)
def test_only_catalogue_ids_are_accepted_and_what_was_sent_is_not_echoed(client, astronaut, model):
    small = astronaut.resize((64, 64))
    requests = [
        ("/generate", {"model": model, "prompt": "x"}),
        ("/inpaint", {"model": model, "image": encoded(small), "mask": encoded(box_mask(small.size, (0, 0, 8, 8)))}),
        ("/jobs", {"task": "generate", "model": model, "prompt": "x"}),
    ]
    for path, body in requests:
        status, code, message = error_of(client.post(API_PREFIX + path, json=body))
        assert (status, code) == (404, "unknown_model")
        assert not model or model not in message


def test_unknown_jobs_and_routes_are_404(client):
    for method, path in [("get", "/jobs/0123456789abcdef"), ("get", "/jobs/../etc/result"), ("delete", "/jobs/x")]:
        status, code, _ = error_of(getattr(client, method)(API_PREFIX + path))
        assert status == 404 and code in ("unknown_job", "not_found")
    assert error_of(client.get(f"{API_PREFIX}/jobs/abc/result"))[:2] == (404, "unknown_job")
    assert error_of(client.get(f"{API_PREFIX}/nothing-here"))[:2] == (404, "not_found")
    assert error_of(client.delete(f"{API_PREFIX}/health"))[:2] == (405, "method_not_allowed")


# -- 401 ---------------------------------------------------------------------------------------------------------------


def test_with_a_key_set_every_route_but_health_needs_it(client, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    assert client.get(f"{API_PREFIX}/models").status_code == 200  # no key configured yet
    secret = "s3cret-key-value"
    monkeypatch.setenv("STUDIO_API_KEY", secret)  # read per request: applies at once
    routes = [
        ("get", "/models"),
        ("get", "/openapi.json"),
        ("get", "/docs"),
        ("post", "/generate"),
        ("post", "/inpaint"),
        ("post", "/jobs"),
        ("get", "/jobs/abc"),
        ("get", "/jobs/abc/result"),
        ("delete", "/jobs/abc"),
        ("get", "/no-such-route"),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": secret}, {"Authorization": "Basic " + secret}):
        for method, path in routes:
            response = client.request(method.upper(), API_PREFIX + path, headers=headers, json={})
            status, code, message = error_of(response)
            assert (status, code) == (401, "unauthorized"), (method, path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert secret not in response.text
    assert client.get(f"{API_PREFIX}/health").status_code == 200
    authorised = {"Authorization": f"Bearer {secret}"}
    assert client.get(f"{API_PREFIX}/models", headers=authorised).status_code == 200
    assert client.get(f"{API_PREFIX}/openapi.json", headers=authorised).status_code == 200
    assert client.post(f"{API_PREFIX}/generate", headers=authorised, json={"model": "nope", "prompt": "x"}).status_code == 404
    assert secret not in caplog.text


# -- 413 ---------------------------------------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_refused_by_its_content_length(make_client, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_BODY_MB", "1")
    client = make_client()
    over = {"model": "opencv-ns", "image": "A" * (1024 * 1024), "mask": "A"}
    status, code, message = error_of(client.post(f"{API_PREFIX}/inpaint", json=over))
    assert (status, code) == (413, "body_too_large") and "1 MB" in message
    under = {"model": "opencv-ns", "image": "A" * (1000 * 1000), "mask": "AAAA"}
    assert error_of(client.post(f"{API_PREFIX}/inpaint", json=under))[:2] == (400, "bad_image")


def _drive(app, headers: list[tuple[bytes, bytes]], chunks: int, chunk_size: int = 64 * 1024) -> tuple[int, int]:
    """Send a streamed (chunked) POST straight to the ASGI app; returns (status, chunks it read)."""
    read = 0
    started: list[dict] = []

    async def receive():
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * chunk_size, "more_body": read < chunks}

    async def send(message):
        if message["type"] == "http.response.start":
            started.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/inpaint",
        "raw_path": b"/inpaint",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    anyio.run(app, scope, receive, send)
    return started[0]["status"], read


def test_a_streamed_body_is_cut_off_at_the_cap_without_reading_the_rest(monkeypatch):
    services.reset()
    app = create_api(max_body_bytes=1024 * 1024)
    status, read = _drive(app, [], chunks=100)  # 6.4 MB, no Content-Length
    assert status == 413
    assert read == 17  # 16 chunks fill the 1 MB cap exactly; the 17th goes over
    monkeypatch.setenv("STUDIO_API_KEY", "k")
    status, read = _drive(app, [], chunks=100)
    assert (status, read) == (401, 0)  # a client without the key costs no body reading at all


# -- 429, 503, 504 -----------------------------------------------------------------------------------------------------


def test_a_full_queue_answers_429_with_retry_after(tiny_catalogue, make_client, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_QUEUE", "1")
    client = make_client()
    running = client.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 10}).json()
    wait_for_a_step(client, running["id"])
    queued = client.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 11})
    assert queued.status_code == 202 and queued.json()["position"] == 1
    assert client.get(f"{API_PREFIX}/health").json()["queue_length"] == 1
    for path, body in [("/jobs", {"task": "generate", **LONG_JOB, "seed": 12}), ("/generate", {**LONG_JOB, "seed": 13})]:
        refused = client.post(API_PREFIX + path, json=body)
        status, code, message = error_of(refused)
        assert (status, code) == (429, "busy") and "waiting" in message
        assert int(refused.headers["retry-after"]) >= 1
    for job_id in (queued.json()["id"], running["id"]):
        client.delete(f"{API_PREFIX}/jobs/{job_id}")
    assert wait_for_status(client, running["id"], {"cancelled", "done"})["status"] == "cancelled"


def _on_the_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_bodies_are_parsed_and_the_queue_locked_off_the_event_loop(tiny_catalogue, make_client, monkeypatch, coffee):
    """The API shares Streamlit's event loop with every page's websocket: parsing a large body and taking the
    queue's lock (its worker holds it at times) happen in worker threads, never on the loop."""
    seen: list[tuple[str, bool]] = []
    loads, jobs = json.loads, JobQueue.jobs

    def recording_loads(text, *args, **kwargs):
        if len(text) > 100_000:
            seen.append(("json.loads", _on_the_event_loop()))
        return loads(text, *args, **kwargs)

    def recording_jobs(queue, *args, **kwargs):
        seen.append(("queue.jobs", _on_the_event_loop()))
        return jobs(queue, *args, **kwargs)

    monkeypatch.setattr(json, "loads", recording_loads)
    monkeypatch.setattr(JobQueue, "jobs", recording_jobs)
    monkeypatch.setenv("STUDIO_MAX_JOBS_PER_SESSION", "1")
    client = make_client()
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    body = {"model": "opencv-telea", "image": encoded(noise), "mask": encoded(box_mask(noise.size, (10, 10, 60, 60)))}
    assert client.post(f"{API_PREFIX}/inpaint", json=body).status_code == 200
    running = client.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 30}).json()
    refused = client.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 31})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    client.delete(f"{API_PREFIX}/jobs/{running['id']}")
    assert {what for what, _ in seen} == {"json.loads", "queue.jobs"}
    assert [what for what, on_loop in seen if on_loop] == []


def test_one_client_cannot_take_more_than_its_share(tiny_catalogue, make_client, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_JOBS_PER_SESSION", "1")
    first = make_client(client=("10.0.0.1", 4000))
    other = TestClient(first.app, client=("10.0.0.2", 4000))
    mine = first.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 20})
    assert mine.status_code == 202
    refused = first.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 21})
    status, code, message = error_of(refused)
    assert (status, code) == (429, "busy") and "you already have 1" in message
    assert int(refused.headers["retry-after"]) >= 1
    theirs = other.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 22})
    assert theirs.status_code == 202  # another client still gets its turn
    # A client cancels only for itself: the other's DELETE of my job leaves it to me.
    assert other.delete(f"{API_PREFIX}/jobs/{mine.json()['id']}").json()["cancel_requested"] is False
    assert first.delete(f"{API_PREFIX}/jobs/{mine.json()['id']}").status_code == 200
    assert wait_for_status(first, mine.json()["id"], {"cancelled"})["status"] == "cancelled"
    other.delete(f"{API_PREFIX}/jobs/{theirs.json()['id']}")


def test_a_catalogue_model_that_is_not_downloaded_answers_503_with_how_to_get_it(client, astronaut):
    small = astronaut.resize((64, 64))
    inpaint = {"image": encoded(small), "mask": encoded(box_mask(small.size, (8, 8, 24, 24)))}
    for path, body in [
        ("/generate", {"model": "sd-turbo", "prompt": "a fox"}),
        ("/inpaint", {"model": "sd15-inpainting", "prompt": "a fox", **inpaint}),
        ("/jobs", {"task": "generate", "model": "sd15", "prompt": "a fox"}),
    ]:
        status, code, message = error_of(client.post(API_PREFIX + path, json=body))
        assert (status, code) == (503, "model_unavailable")
        assert f"python -m core download {body['model']}" in message
    assert client.get(f"{API_PREFIX}/health").json()["queue_length"] == 0  # nothing was queued


def test_a_synchronous_call_that_waits_too_long_answers_504_and_the_job_goes_on(tiny_catalogue, make_client, monkeypatch):
    monkeypatch.setenv("STUDIO_API_SYNC_TIMEOUT_S", "0.3")
    client = make_client()
    started = time.monotonic()
    response = client.post(f"{API_PREFIX}/generate", json={**LONG_JOB, "seed": 30})
    assert time.monotonic() - started < 15  # the job itself takes far longer
    status, code, message = error_of(response)
    assert (status, code) == (504, "timeout")
    job_id = response.json()["error"]["job_id"]
    assert job_id in message
    assert client.get(f"{API_PREFIX}/jobs/{job_id}").json()["status"] in ("queued", "running")
    assert client.delete(f"{API_PREFIX}/jobs/{job_id}").status_code == 200


def test_waiting_for_a_job_never_blocks_other_requests(tiny_catalogue, make_client, monkeypatch):
    monkeypatch.setenv("STUDIO_API_SYNC_TIMEOUT_S", "4")
    answers = []
    with make_client() as client:  # one event loop serves every request, as in the real server
        # A job ahead of it: one long job alone can finish inside the 4 s on a quiet machine (200, not 504).
        ahead = client.post(f"{API_PREFIX}/jobs", json={"task": "generate", **LONG_JOB, "seed": 39}).json()
        waiting = threading.Thread(
            target=lambda: answers.append(client.post(f"{API_PREFIX}/generate", json={**LONG_JOB, "seed": 40}))
        )
        waiting.start()
        deadline = time.monotonic() + PATIENCE_S
        while len(services.queue().jobs()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The synchronous call is now waiting on its job; other requests are answered meanwhile.
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            assert client.get(f"{API_PREFIX}/models").status_code == 200
            latencies.append(time.monotonic() - started)
        assert waiting.is_alive()
        assert max(latencies) < 2.0, latencies  # a blocked loop would hold them until the 4 s timeout
        waiting.join(timeout=PATIENCE_S)
        assert answers[0].status_code == 504
        client.delete(f"{API_PREFIX}/jobs/{answers[0].json()['error']['job_id']}")
        client.delete(f"{API_PREFIX}/jobs/{ahead['id']}")


def test_errors_never_carry_a_traceback_or_a_path(client, astronaut, caplog):
    # A bad catalogue path given by the operator, an absurd body, odd content types: one clean line each.
    for response in [
        client.post(f"{API_PREFIX}/generate", content=b"\x00\xff" * 100, headers={"content-type": "application/json"}),
        client.post(f"{API_PREFIX}/generate", content=b"model=x", headers={"content-type": "application/x-www-form-urlencoded"}),
        client.post(f"{API_PREFIX}/inpaint", json={"model": "opencv-ns", "image": encoded(astronaut), "mask": "/etc/passwd"}),
        client.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "x" * 5000}),
        client.post(
            f"{API_PREFIX}/generate",
            content=b'{"model": "sd-turbo", "prompt": "x", "seed": 1' + b"0" * 5000 + b"}",
            headers={"content-type": "application/json"},
        ),
    ]:
        status, _, message = error_of(response)
        assert 400 <= status < 500, (status, message)
        assert len(message) < 400


def test_json_numbers_python_accepts_but_json_forbids_are_not_a_crash(client):
    for raw in [b'{"model": "sd-turbo", "prompt": "x", "guidance_scale": Infinity}', b'{"model": "sd-turbo", "prompt": "x", "guidance_scale": -1e400}']:
        status, code, message = error_of(client.post(f"{API_PREFIX}/generate", content=raw, headers={"content-type": "application/json"}))
        assert (status, code) == (400, "bad_parameter") and "guidance_scale" in message


def test_json_response_bodies_are_strict_json(client, astronaut):
    response = client.post(
        f"{API_PREFIX}/inpaint",
        json={"model": "opencv-telea", "image": encoded(astronaut), "mask": encoded(box_mask(astronaut.size, (5, 5, 30, 30)))},
    )
    json.loads(response.text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


def test_a_prompt_too_long_for_the_text_encoder_comes_back_with_a_warning(tiny_client):
    body = {"model": "tiny-sd", "width": 64, "height": 64, "num_inference_steps": 1, "seed": 3}
    short = tiny_client.post(f"{API_PREFIX}/generate", json={**body, "prompt": "a red fox"}).json()
    long = tiny_client.post(f"{API_PREFIX}/generate", json={**body, "prompt": "a red fox in deep snow, " * 20}).json()
    assert short["warnings"] == []
    assert len(long["warnings"]) == 1 and "reads only 77" in long["warnings"][0]
