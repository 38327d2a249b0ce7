"""Hosted inference through `huggingface_hub.InferenceClient`, for hosts without a GPU.

The catalogue says where: `hub` is the model id and `options.provider` the Inference Provider
("auto" when unset), or `options.endpoint` is the URL of a dedicated Inference Endpoint (then the
provider is not used). `options.timeout` bounds each request, in seconds.

Inpainting: `InferenceClient.image_to_image` takes an image, a prompt and a target size but no mask
(huggingface_hub 2.4; its extra keyword arguments go to the provider unchecked and no provider
defines a mask). So the engine sends the region the runner cropped around the mask, and the runner
pastes back only the masked pixels: the service repaints the whole region, the user sees it only
where they painted.

Progress is indeterminate: the blocking HTTP call runs in a helper thread while this thread keeps
calling the reporter, so a cancel (the reporter raising) abandons the wait at once; the abandoned
request ends on its own at the timeout. The token goes only into the request's header: it is never
logged, and errors are raised without their HTTP cause, whose request still carries it.
"""

from __future__ import annotations

import email.utils
import io
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from PIL import Image, UnidentifiedImageError

from core.catalogue import ModelSpec, hub_offline
from core.engines.base import Generated, Reporter
from core.errors import (
    BadParameterError,
    BusyError,
    EngineError,
    ModelUnavailableError,
    StudioError,
    UnknownModelError,
)
from core.requests import MAX_SEED, GenerateRequest, InpaintRequest
from core.secrets import hf_token

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 900.0
POLL_S = 0.2  # how often the wait checks for cancel


class _NotAnImage(Exception):
    """The service answered 200 with bytes that do not decode as an image."""


class HostedEngine:
    def __init__(self, spec: ModelSpec):
        options = spec.options
        provider = options.get("provider")
        endpoint = options.get("endpoint")
        timeout = options.get("timeout", DEFAULT_TIMEOUT_S)
        if provider is not None and (not isinstance(provider, str) or not provider.strip()):
            raise BadParameterError(f"{spec.id}: options.provider must be a provider name such as 'auto', got {provider!r}")
        if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://"))):
            raise BadParameterError(f"{spec.id}: options.endpoint must be an http:// or https:// URL")
        ok_timeout = isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and math.isfinite(timeout)
        if not ok_timeout or not 0 < timeout <= MAX_TIMEOUT_S:
            raise BadParameterError(f"{spec.id}: options.timeout must be seconds in (0, {MAX_TIMEOUT_S:g}], got {timeout!r}")
        if not endpoint and not spec.hub:
            raise BadParameterError(f"{spec.id}: a hosted model needs 'hub' (a model id) or options.endpoint")
        self.spec = spec
        self._provider = provider or "auto"
        self._endpoint = endpoint
        self._timeout = float(timeout)

    def text_to_image(self, request: GenerateRequest, report: Reporter) -> Generated:
        images = []
        total = request.num_images
        for index in range(total):
            seed = (request.seed + index) % (MAX_SEED + 1)  # one seed per image, reproducible from the first

            def generate(client: Any, seed: int = seed) -> Image.Image:
                return client.text_to_image(
                    request.prompt,
                    negative_prompt=request.negative_prompt or None,
                    width=request.width,
                    height=request.height,
                    num_inference_steps=request.num_inference_steps,
                    guidance_scale=request.guidance_scale,
                    seed=seed,
                    model=self._model_argument,
                )

            image = self._call(generate, report, index, total, task="text-to-image")
            images.append(_as_rgb(image, (request.width, request.height)))
        report(total, total)
        return Generated(images)

    def inpaint(self, image: Image.Image, mask: Image.Image, request: InpaintRequest, report: Reporter) -> Generated:
        from huggingface_hub import ImageToImageTargetSize

        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        width, height = image.size

        def repaint(client: Any) -> Image.Image:
            return client.image_to_image(
                buffer.getvalue(),
                prompt=request.prompt or None,
                negative_prompt=request.negative_prompt or None,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                target_size=ImageToImageTargetSize(width=width, height=height),
                model=self._model_argument,
            )

        result = self._call(repaint, report, 0, 1, task="image-to-image")
        report(1, 1)
        return Generated([_as_rgb(result, image.size)])

    def close(self) -> None:
        """Nothing held: each call makes its own client."""

    @property
    def _model_argument(self) -> str | None:
        return None if self._endpoint else self.spec.hub

    def _client(self, token: str) -> Any:
        from huggingface_hub import InferenceClient

        if self._endpoint:
            return InferenceClient(model=self._endpoint, token=token, timeout=self._timeout)
        return InferenceClient(provider=self._provider, token=token, timeout=self._timeout)

    def _call(self, work: Callable[[Any], Image.Image], report: Reporter, step: int, total: int, *, task: str) -> Image.Image:
        # 1. Refuse early what cannot work.
        token = hf_token()
        if token is None:
            raise ModelUnavailableError(
                f"{self.spec.name} runs on Hugging Face inference: set HF_TOKEN (environment variable or Streamlit secrets)"
            )
        if _offline():
            raise ModelUnavailableError(f"{self.spec.name} needs the network, and HF_HUB_OFFLINE is set; unset it to use hosted models")
        report(step, total)  # cancel point before anything is sent
        # 2. The blocking request in a helper thread; this one keeps polling the reporter.
        client = self._client(token)
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                reply = work(client)
                try:
                    reply.load()
                except OSError as error:  # a truncated or corrupt image
                    raise _NotAnImage() from error
                outcome["image"] = reply
            except UnidentifiedImageError as error:
                outcome["error"] = _NotAnImage(type(error).__name__)
            except BaseException as error:  # handed to the waiting thread, translated there
                outcome["error"] = error
            finally:
                finished.set()

        threading.Thread(target=run, name=f"hosted-{self.spec.id}", daemon=True).start()
        # httpx's timeout bounds each read, not the whole reply; this bounds the whole wait.
        deadline = time.monotonic() + 2 * self._timeout + 5
        while not finished.wait(POLL_S):
            report(step, total)  # raises CancelledError: the wait is abandoned here
            if time.monotonic() > deadline:
                raise EngineError(f"{self.spec.name} timed out waiting for the inference service; try again")
        # 3. Translate failures into one-line messages, without the HTTP cause (it holds the token).
        error = outcome.get("error")
        if error is not None:
            raise self._translate(error, task) from None
        return outcome["image"]

    def _translate(self, error: BaseException, task: str) -> StudioError:
        from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, OfflineModeIsEnabled

        name = self.spec.name
        where = "the endpoint" if self._endpoint else f"provider {self._provider!r}"
        if isinstance(error, StudioError):
            return error
        if isinstance(error, InferenceTimeoutError):
            return EngineError(f"{name} timed out after {self._timeout:g} s waiting for the inference service; try again")
        if isinstance(error, OfflineModeIsEnabled):
            return ModelUnavailableError(f"{name} needs the network, and HF_HUB_OFFLINE is set; unset it to use hosted models")
        if isinstance(error, _NotAnImage):
            return EngineError(f"{name}: the inference service replied with something that is not an image; try again later")
        if isinstance(error, HfHubHTTPError) and error.response is not None:
            status = error.response.status_code
            log.info("hosted model %s: HTTP %s from the inference service", self.spec.id, status)
            if status in (401, 403):
                return ModelUnavailableError(
                    f"{name}: the token was refused (HTTP {status}); check that HF_TOKEN is valid and may call {where}"
                )
            if status == 402:
                return ModelUnavailableError(f"{name}: the account has no inference credits left (HTTP 402)")
            if status == 404:
                return UnknownModelError(
                    f"{name}: the inference service does not know this model (HTTP 404); check 'hub' and options in the catalogue"
                )
            if status == 429:
                return BusyError(f"{name}: too many requests to the inference service; {_retry_advice(error.response)}")
            if status == 503:
                return BusyError(f"{name}: the model is loading or overloaded on the service; {_retry_advice(error.response)}")
            if status in (400, 413, 422):
                return BadParameterError(f"{name}: the inference service refused these settings (HTTP {status}); try another size or fewer steps")
            return EngineError(f"{name}: the inference service failed (HTTP {status}); try again later")
        if isinstance(error, ValueError):  # from huggingface_hub's provider routing: model, task or provider unknown
            return UnknownModelError(f"{name}: {where} does not offer this model for {task}; check 'hub' and options.provider")
        log.warning("hosted model %s: request failed with %s", self.spec.id, type(error).__name__)
        return EngineError(f"{name}: could not complete the request to the inference service ({type(error).__name__}); check the network and try again")


def _offline() -> bool:
    from huggingface_hub import constants

    return hub_offline() or constants.is_offline_mode()


def _retry_advice(response: Any) -> str:
    """From the Retry-After header (seconds or an HTTP date) when the service gives one."""
    raw = (response.headers.get("retry-after") or "").strip()
    seconds: float | None = None
    if raw.isdigit():
        seconds = float(raw)
    elif raw:
        try:
            when = email.utils.parsedate_to_datetime(raw)
            seconds = (when - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            seconds = None
    if seconds is None:
        return "wait a minute and try again"
    return f"try again in {max(1, math.ceil(seconds))} s"


def _as_rgb(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """RGB at the size asked for: providers may answer in another mode or size."""
    image = image.convert("RGB")
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
