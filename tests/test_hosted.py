"""The hosted-inference engine against a local server that speaks the Inference Endpoint protocol
(tests/fake_inference_server.py), pointed at through the catalogue's `options.endpoint`.

Success through the real Studio, every error path (each checked for the token leaking into the
message, the traceback or the log), and cancel abandoning a slow reply.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import traceback

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.catalogue import Catalogue
from core.engines import load_engine
from core.engines.base import silent_reporter
from core.engines.hosted import HostedEngine
from core.errors import (
    BadParameterError,
    BusyError,
    CancelledError,
    EngineError,
    ModelUnavailableError,
    UnknownModelError,
)
from core.requests import GenerateRequest, InpaintRequest
from tests.fake_inference_server import FakeInferenceServer, gradient_png

FAKE_TOKEN = "hf_FAKEtoken0123456789abcdefSECRET"
SCENARIOS = ("ok", "unauthorized", "forbidden", "missing", "busy", "busy-later", "loading", "html", "json", "truncated")


@pytest.fixture(scope="module")
def server():
    fake = FakeInferenceServer(token=FAKE_TOKEN, slow_s=3.0).start()
    yield fake
    fake.stop()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens here once the probe closes


def _entry(model_id: str, endpoint: str, timeout: float = 10.0) -> str:
    return (
        f"\n[models.{model_id}]\n"
        f'name = "Hosted {model_id} (test)"\n'
        'tasks = ["txt2img", "inpaint"]\n'
        'engine = "hosted"\n'
        'hub = "test/remote-model"\n'
        "working_resolution = 512\n"
        "size_multiple = 8\n"
        "max_side = 1024\n"
        "default_steps = 4\n"
        "default_guidance = 0.0\n"
        f"options = {{ endpoint = {json.dumps(endpoint)}, timeout = {timeout} }}\n"
    )


@pytest.fixture
def catalogue(server, tmp_path, monkeypatch) -> Catalogue:
    entries = [_entry(f"hosted-{scenario}", server.url(scenario)) for scenario in SCENARIOS]
    entries.append(_entry("hosted-slow", server.url("slow")))
    entries.append(_entry("hosted-timeout", server.url("slow"), timeout=0.5))
    entries.append(_entry("hosted-unreachable", f"http://127.0.0.1:{_closed_port()}/"))
    catalogue_file = tmp_path / "models.toml"
    catalogue_file.write_text("".join(entries), encoding="utf-8")
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(catalogue_file))
    return Catalogue.load(catalogue_file)


@pytest.fixture(autouse=True)
def online_with_token(server, monkeypatch):
    """A token, and the network allowed (conftest sets HF_HUB_OFFLINE; huggingface_hub reads it once, at import)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    server.seen.clear()


@pytest.fixture
def studio(catalogue, tmp_path):
    from core.pool import ModelPool
    from core.runner import Studio
    from core.store import ResultStore

    return Studio(catalogue, ModelPool(1), ResultStore(tmp_path / "store", 1 << 30))


class StepLog:
    def __init__(self, cancel: threading.Event | None = None):
        self.steps: list[tuple[int, int]] = []
        self.cancel = cancel

    def __call__(self, step, total, preview=None):
        self.steps.append((step, total))
        if self.cancel is not None and self.cancel.is_set():
            raise CancelledError("cancelled")


def _generate(model: str, **changes) -> GenerateRequest:
    return GenerateRequest(**{"model": model, "prompt": "a lighthouse at dusk", "seed": 41, "width": 96, "height": 64, **changes})


def _assert_no_token(error: BaseException, log_text: str) -> None:
    assert FAKE_TOKEN not in str(error) and FAKE_TOKEN not in repr(error)
    assert FAKE_TOKEN not in "".join(traceback.format_exception(error))
    assert FAKE_TOKEN not in log_text


# ---------------------------------------------------------------------------------------------
# Success


def test_text_to_image_through_the_studio(studio, server):
    steps = StepLog()
    result = studio.generate(_generate("hosted-ok", num_images=2), steps)
    # The images are the server's PNGs for this prompt and each image's seed, pixel for pixel.
    for index, image in enumerate(result.images):
        expected = Image.open(io.BytesIO(gradient_png("a lighthouse at dusk", 41 + index, 96, 64))).convert("RGB")
        assert image.size == (96, 64) and np.array_equal(np.asarray(image), np.asarray(expected))
    # What InferenceClient sent: the token as a bearer header, PNG wanted, the request's parameters.
    first = server.seen[0]
    assert first.task == "text-to-image" and first.inputs == "a lighthouse at dusk"
    assert first.headers["authorization"] == f"Bearer {FAKE_TOKEN}" and first.headers["accept"] == "image/png"
    assert first.parameters == {"width": 96, "height": 64, "seed": 41, "num_inference_steps": 4, "guidance_scale": 0.0}
    assert [seen.parameters["seed"] for seen in server.seen] == [41, 42]
    # Progress: monotonic, ends at its total; provenance names the model it was made with.
    assert steps.steps[-1] == (2, 2) and [s for s, _ in steps.steps] == sorted(s for s, _ in steps.steps)
    assert result.parameters["model_source"] == f"hosted:test/remote-model@{server.url()}"
    # The same request again comes from the store, without a call.
    calls = len(server.seen)
    again = studio.generate(_generate("hosted-ok", num_images=2))
    assert again.cached and again.pngs == result.pngs and len(server.seen) == calls


def test_inpaint_sends_the_region_and_keeps_unmasked_pixels(studio, server, astronaut):
    mask = Image.new("L", astronaut.size, 0)
    ImageDraw.Draw(mask).rectangle((200, 80, 310, 190), fill=255)
    request = InpaintRequest(model="hosted-ok", image=astronaut, mask=mask, prompt="a golden helmet", mask_blur=0, seed=3)
    result = studio.inpaint(request)
    out = np.asarray(result.images[0])
    assert result.images[0].size == astronaut.size
    hole = np.asarray(mask) > 0
    assert np.array_equal(out[~hole], np.asarray(astronaut)[~hole])
    assert np.abs(out[hole].astype(np.int16) - np.asarray(astronaut, np.int16)[hole]).mean() > 10
    (seen,) = server.seen
    assert seen.task == "image-to-image" and seen.parameters["prompt"] == "a golden helmet"
    assert seen.parameters["target_size"] == {"width": seen.inputs.width, "height": seen.inputs.height}
    assert seen.inputs.width % 8 == 0 and seen.inputs.height % 8 == 0


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("model", "error_type", "fragment"),
    [
        ("hosted-unauthorized", ModelUnavailableError, "token was refused (HTTP 401)"),
        ("hosted-forbidden", ModelUnavailableError, "token was refused (HTTP 403)"),
        ("hosted-missing", UnknownModelError, "does not know this model"),
        ("hosted-busy", BusyError, "try again in 7 s"),
        ("hosted-loading", BusyError, "try again"),
        ("hosted-html", EngineError, "not an image"),
        ("hosted-json", EngineError, "not an image"),
        ("hosted-truncated", EngineError, "not an image"),
        ("hosted-timeout", EngineError, "timed out after 0.5 s"),
        ("hosted-unreachable", EngineError, "could not complete the request"),
    ],
)
def test_every_failure_is_one_clear_line_without_the_token(studio, model, error_type, fragment, caplog):
    caplog.set_level(logging.DEBUG)
    started = time.perf_counter()
    with pytest.raises(error_type) as raised:
        studio.generate(_generate(model))
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
    _assert_no_token(raised.value, caplog.text)
    assert time.perf_counter() - started < 5  # the timeout case waits 0.5 s, not the server's 3 s


def test_retry_after_as_a_date_becomes_seconds(studio):
    with pytest.raises(BusyError) as raised:
        studio.generate(_generate("hosted-busy-later"))
    assert any(f"try again in {seconds} s" in str(raised.value) for seconds in (29, 30, 31))


def test_a_wrong_token_is_refused_and_not_echoed(studio, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "hf_WRONGtoken9876543210zyxwvuSECRET"
    monkeypatch.setenv("HF_TOKEN", wrong)
    with pytest.raises(ModelUnavailableError, match="token was refused") as raised:
        studio.generate(_generate("hosted-ok"))
    for secret in (wrong, FAKE_TOKEN):
        assert secret not in "".join(traceback.format_exception(raised.value)) and secret not in caplog.text


def test_no_token_says_to_set_it_and_sends_nothing(studio, catalogue, server, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ModelUnavailableError, match="HF_TOKEN"):
        studio.generate(_generate("hosted-ok"))  # refused by availability, before any engine
    with pytest.raises(ModelUnavailableError, match="set HF_TOKEN"):
        HostedEngine(catalogue.get("hosted-ok")).text_to_image(_generate("hosted-ok"), silent_reporter)
    assert server.seen == []


def test_offline_mode_is_refused_before_sending(catalogue, server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        load_engine(catalogue.get("hosted-ok")).text_to_image(_generate("hosted-ok"), silent_reporter)
    assert server.seen == []


@pytest.mark.parametrize(
    "options", [{"endpoint": "ftp://127.0.0.1/x"}, {"endpoint": "127.0.0.1"}, {"timeout": 0}, {"timeout": True}, {"provider": ""}]
)
def test_bad_catalogue_options_are_refused(catalogue, options):
    from dataclasses import replace
    from types import MappingProxyType

    spec = catalogue.get("hosted-ok")
    with pytest.raises(BadParameterError):
        HostedEngine(replace(spec, options=MappingProxyType({**spec.options, **options})))


# ---------------------------------------------------------------------------------------------
# Cancel


def test_cancel_abandons_a_slow_reply(studio, server):
    prepared = studio.prepare(_generate("hosted-slow"))
    cancel = threading.Event()
    steps = StepLog(cancel)
    timer = threading.Timer(0.6, cancel.set)
    started = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(CancelledError):
            studio.run(prepared, steps)
    finally:
        timer.cancel()
    ended = time.perf_counter()
    cancelled_at = started + 0.6
    assert ended - cancelled_at < 0.5  # the server answers only after 3 s
    assert len(steps.steps) >= 3 and set(steps.steps) == {(0, 1)}  # indeterminate progress while waiting
    assert [seen.task for seen in server.seen] == ["text-to-image"]  # the request was in flight
    assert studio.cached(prepared) is None
