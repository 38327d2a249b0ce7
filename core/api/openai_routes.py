"""OpenAI's images API under /v1 (`/images/generations`, `/images/edits`), for every app built on the
`openai` SDK, over the studio's own queue, catalogue, limits and result cache.

`model` is a catalogue id; none, or one of OpenAI's own names (dall-e-3, gpt-image-1...), means our
default model. `response_format` "url" links to `/v1/images/results/<token>.png`, served while the
queue keeps the finished job (like OpenAI's links, they expire); without a `response_format` both
the link and the base64 PNG are sent, so code written for either model family works. Edits keep
the image's own size and change only the pixels under the mask (OpenAI's rule: the mask's fully
transparent pixels). Errors keep OpenAI's shape, so the SDK raises its typed exceptions.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

import core
from core import services
from core.api import openai_shapes, runs
from core.api.auth import BodyLimit, RequireKey, client_session
from core.api.errors import ApiError, Failure, add_error_handlers
from core.api.offload import Base64, admitted, heavy, json_response
from core.api.openai_shapes import GenerationBody, ParameterError
from core.images import load_image
from core.jobs import JobStatus, ResultGoneError, UnknownJobError
from core.runner import Result

OPENAI_PREFIX = "/v1"
RESULTS_PATH = "/images/results/"
_MAX_LINKS = 4096  # result links remembered; the oldest are forgotten first
_MAX_FORM_FILES = 4
_MAX_FORM_FIELDS = 32

_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}
# Only "busy" is worth the SDK retrying: a retried 504 would queue the same work again under a new seed.
_RETRYABLE = (429,)


def render_error(failure: Failure) -> JSONResponse:
    """OpenAI's error body; validation errors are 400 there, never 422."""
    status = 400 if failure.status == 422 else failure.status
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = "invalid_api_key" if status == 401 else failure.code
    body = {"error": {"message": failure.message, "type": kind, "param": failure.param, "code": code}}
    headers = dict(failure.headers or {})
    if status not in _RETRYABLE:
        headers["x-should-retry"] = "false"  # the SDK would otherwise retry 409 and 5xx answers
    return JSONResponse(body, status_code=status, headers=headers)


class _Links:
    """Unguessable tokens for result links: token -> (job id, image index). Bounded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def add(self, job_id: str, index: int) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._links[token] = (job_id, index)
            while len(self._links) > _MAX_LINKS:
                self._links.popitem(last=False)
        return token

    def get(self, token: str) -> tuple[str, int] | None:
        with self._lock:
            return self._links.get(token)


def create_openai_images(*, sync_timeout_s: float | None = None, max_body_bytes: int | None = None) -> FastAPI:
    """The OpenAI images surface as an ASGI app with routes at its root (mounted at /v1)."""
    sync_timeout_s = services.settings().api_sync_timeout_s if sync_timeout_s is None else sync_timeout_s
    max_body_bytes = services.settings().max_body_bytes if max_body_bytes is None else max_body_bytes
    links = _Links()

    api = FastAPI(title="Canvas Studio: OpenAI images API", version=core.__version__, docs_url=None, redoc_url=None)
    api.router.route_class = runs.ParsedOffTheLoopRoute
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes, render=render_error)
    # Result links work without the key, as OpenAI's do: the token is the permission.
    api.add_middleware(RequireKey, render=render_error, is_open=lambda path: path.startswith(RESULTS_PATH))
    add_error_handlers(api, render_error)

    @api.post("/images/generations")
    async def generations(body: GenerationBody, request: Request) -> dict[str, Any]:
        client = client_session(request)

        def submit() -> list[JobStatus]:
            spec = openai_shapes.resolve_model(services.studio().catalogue, body.model, "txt2img")
            with admitted(client), runs.in_client_words(openai_shapes.FIELD_NAMES):
                return runs.submit_all(
                    [openai_shapes.generate_request(body, spec)],
                    client,
                    "OpenAI generation",
                    field_names=openai_shapes.FIELD_NAMES,
                )

        statuses = await heavy(submit)
        results = await runs.wait_for_all(statuses, client, sync_timeout_s)
        return await json_response(_response, request, links, statuses, results, body.response_format)

    @api.post("/images/edits")
    async def edits(request: Request) -> dict[str, Any]:
        client = client_session(request)
        async with request.form(max_files=_MAX_FORM_FILES, max_fields=_MAX_FORM_FIELDS) as form:
            images = [
                part for part in (*form.getlist("image"), *form.getlist("image[]")) if isinstance(part, UploadFile)
            ]
            if not images:
                raise ParameterError("image is required: send the image to edit as a multipart file", "image")
            if len(images) > 1:
                raise ParameterError("send one image: editing several images in one request is not supported", "image")
            mask_part = form.get("mask")
            if mask_part is not None and not isinstance(mask_part, UploadFile):
                raise ParameterError("mask must be a file (a PNG with an alpha channel)", "mask")
            image_bytes = await images[0].read()
            mask_bytes = await mask_part.read() if mask_part is not None else None
            fields = {
                name: form.get(name) for name in ("prompt", "model", "n", "size", "response_format", "stream", "seed")
            }
        for name, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise ParameterError(f"{name} must be a plain form field, not a file", name)
        response_format = fields["response_format"] or None
        if response_format not in (None, "url", "b64_json"):
            raise ParameterError("response_format must be 'url' or 'b64_json'", "response_format")
        if (fields["stream"] or "").lower() == "true":
            raise ParameterError("streaming is not supported; leave stream unset", "stream")

        def submit() -> list[JobStatus]:
            studio = services.studio()
            spec = openai_shapes.resolve_model(studio.catalogue, fields["model"], "inpaint")
            count = openai_shapes.parse_n(fields["n"], spec)
            openai_shapes.parse_size(fields["size"])  # checked, not used: the result keeps the image's size
            seed = openai_shapes.parse_seed(fields["seed"])
            with admitted(client):  # a queue place before decoding
                image = load_image(image_bytes, studio.image_limits)
                mask = openai_shapes.edit_mask(mask_bytes, image, studio.image_limits)
                with runs.in_client_words(openai_shapes.FIELD_NAMES):
                    core_requests = openai_shapes.edit_requests(spec, image, mask, fields["prompt"] or "", count, seed)
                return runs.submit_all(core_requests, client, "OpenAI edit", field_names=openai_shapes.FIELD_NAMES)

        statuses = await heavy(submit)
        results = await runs.wait_for_all(statuses, client, sync_timeout_s)
        return await json_response(_response, request, links, statuses, results, response_format)

    @api.get("/models")
    async def models() -> dict[str, Any]:
        listed = await anyio.to_thread.run_sync(_image_models)
        return {"object": "list", "data": listed}

    @api.get("/models/{model_id}")
    async def model(model_id: str) -> dict[str, Any]:
        for item in await anyio.to_thread.run_sync(_image_models):
            if item["id"] == model_id:
                return item
        raise ApiError(404, "model_not_found", "no such model here; GET /v1/models lists them")

    @api.get(RESULTS_PATH + "{token}.png")
    async def result_image(token: str) -> Response:
        link = links.get(token)
        if link is None:
            raise ApiError(404, "not_found", "no such image, or its link has expired")
        job_id, index = link

        def png() -> bytes:
            try:
                return services.queue().result(job_id).pngs[index]
            except (UnknownJobError, ResultGoneError, IndexError):
                raise ApiError(404, "not_found", "this image's link has expired") from None

        return Response(await anyio.to_thread.run_sync(png), media_type="image/png")

    return api


def _image_models() -> list[dict[str, Any]]:
    """OpenAI's model objects for the generative models that can run here (apps list them in menus)."""
    return [
        {"id": spec.id, "object": "model", "created": 0, "owned_by": "canvas-studio"}
        for spec in runs.ready_generative_models(services.studio().catalogue)
    ]


def _response(
    request: Request, links: _Links, statuses: list[JobStatus], results: list[Result], response_format: str | None
) -> dict[str, Any]:
    data = []
    base = str(request.url.replace(path=request.scope.get("root_path", "").rstrip("/") + RESULTS_PATH, query=""))
    for status, result in zip(statuses, results, strict=True):
        for index, png in enumerate(result.pngs):
            item: dict[str, Any] = {"revised_prompt": result.parameters.get("prompt", "")}
            if response_format in (None, "b64_json"):
                item["b64_json"] = Base64(png)  # encoded as the body is written
            if response_format in (None, "url"):
                item["url"] = f"{base}{links.add(status.id, index)}.png"
            data.append(item)
    return {"created": int(time.time()), "data": data, "output_format": "png"}


__all__ = ["OPENAI_PREFIX", "create_openai_images"]
