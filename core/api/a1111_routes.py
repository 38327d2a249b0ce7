"""AUTOMATIC1111's API under /sdapi/v1 (the routes; `a1111_shapes` maps the fields), for the tools
that already speak it (Open WebUI, SillyTavern, openOutpaint, the `webuiapi` package...), over the
studio's own queue, catalogue, limits and result cache: a request made here is a cache hit through
/api/v1, the OpenAI routes and the pages, and the other way round.

What differs from A1111, on purpose: img2img answers at the init image's own size and changes only
masked pixels (width, height and resize_mode do not resize it); an interrupted job answers 409 with
no image rather than a half-denoised one; /progress, /interrupt and /skip are about the caller's
own jobs (by client address), since many clients share this server. Errors keep A1111's shape,
`{"error", "detail", "body", "errors"}`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict

import core
from core import images, masks, services
from core.api import a1111_shapes as a1111
from core.api import runs
from core.api.auth import BodyLimit, RequireKey, client_session
from core.api.errors import Failure, add_error_handlers
from core.api.offload import Base64, admitted, heavy, json_response
from core.api.schemas import base64_bytes
from core.errors import BadImageError, BadMaskError, BadParameterError
from core.infotext import png_parameters
from core.jobs import JobState, JobStatus, UnknownJobError
from core.runner import Result

SDAPI_PREFIX = "/sdapi/v1"
PING_PATH = "/internal/ping"
# What A1111 clients list to fill their menus (SillyTavern asks for upscalers and VAEs, openOutpaint
# for LoRAs and embeddings...): none of these exist here, and an empty list says so without an error.
NOTHING_HERE: dict[str, Any] = {
    "/upscalers": [],
    "/latent-upscale-modes": [],
    "/sd-vae": [],
    "/loras": [],
    "/hypernetworks": [],
    "/face-restorers": [],
    "/realesrgan-models": [],
    "/prompt-styles": [],
    "/extensions": [],
    "/embeddings": {"loaded": {}, "skipped": {}},
}


class PngInfoBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = ""


class _Options:
    """This server's A1111 options: only `sd_model_checkpoint` means anything here (the model for
    requests that name none). Other keys a client posts back are accepted and ignored, as A1111
    ignores keys it does not know."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checkpoint: str | None = None

    def checkpoint(self) -> str | None:
        with self._lock:
            return self._checkpoint

    def select(self, model_id: str) -> None:
        with self._lock:
            self._checkpoint = model_id


def render_error(failure: Failure) -> JSONResponse:
    """A1111's error body (its own handler's shape), with our status and one-line message."""
    body = {"error": failure.code, "detail": failure.message, "body": "", "errors": failure.message}
    return JSONResponse(body, status_code=failure.status, headers=failure.headers)


def create_sdapi(*, sync_timeout_s: float | None = None, max_body_bytes: int | None = None) -> FastAPI:
    """The A1111 surface as an ASGI app with routes at its root (mounted at /sdapi/v1)."""
    sync_timeout_s = services.settings().api_sync_timeout_s if sync_timeout_s is None else sync_timeout_s
    max_body_bytes = services.settings().max_body_bytes if max_body_bytes is None else max_body_bytes
    options = _Options()

    api = FastAPI(title="Canvas Studio: AUTOMATIC1111 API", version=core.__version__, docs_url=None, redoc_url=None)
    api.router.route_class = runs.ParsedOffTheLoopRoute
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes, render=render_error)
    api.add_middleware(RequireKey, render=render_error, scheme="Basic")
    add_error_handlers(api, render_error)

    @api.post("/txt2img")
    async def txt2img(body: a1111.Txt2ImgBody, request: Request) -> dict[str, Any]:
        client = client_session(request)

        def submit() -> tuple[list[JobStatus], list[str]]:
            spec = _model_for(body, "txt2img", options)
            with runs.in_client_words(a1111.FIELD_NAMES):
                core_request, warnings = a1111.generate_request(body, spec)
            with admitted(client):
                return runs.submit_all([core_request], client, "A1111 txt2img", field_names=a1111.FIELD_NAMES), warnings

        statuses, warnings = await heavy(submit)
        results = await runs.wait_for_all(statuses, client, sync_timeout_s)
        return await json_response(_response, body, results, warnings, None)

    @api.post("/img2img")
    async def img2img(body: a1111.Img2ImgBody, request: Request) -> dict[str, Any]:
        client = client_session(request)

        def submit() -> tuple[list[JobStatus], list[str], tuple[int, int]]:
            spec = _model_for(body, "inpaint", options)
            limits = services.studio().image_limits
            with admitted(client):  # a queue place before decoding
                image = images.load_image(base64_bytes(body.init_images[0], "init_images[0]", BadImageError), limits)
                mask = None
                if body.mask:
                    mask = masks.mask_from_image(base64_bytes(body.mask, "mask", BadMaskError), image.size, limits)
                with runs.in_client_words(a1111.FIELD_NAMES):
                    core_requests, warnings = a1111.inpaint_requests(body, spec, image, mask)
                return (
                    runs.submit_all(core_requests, client, "A1111 img2img", field_names=a1111.FIELD_NAMES),
                    warnings,
                    image.size,
                )

        statuses, warnings, size = await heavy(submit)
        results = await runs.wait_for_all(statuses, client, sync_timeout_s)
        return await json_response(_response, body, results, warnings, size)

    @api.get("/sd-models")
    async def sd_models() -> list[dict[str, Any]]:
        def listed() -> list[dict[str, Any]]:
            return [a1111.sd_model_item(spec) for spec in runs.ready_generative_models(services.studio().catalogue)]

        return await anyio.to_thread.run_sync(listed)

    # Availability is looked up on every listing (downloads show at once): nothing to refresh.
    api.add_api_route("/refresh-checkpoints", _nothing_to_refresh, methods=["POST"])

    @api.get("/samplers")
    async def samplers() -> list[dict[str, Any]]:
        return a1111.sampler_list()

    @api.get("/schedulers")
    async def schedulers() -> list[dict[str, Any]]:
        return a1111.schedule_list()

    @api.get("/options")
    async def get_options() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_options_body, options)

    @api.post("/options")
    async def set_options(body: dict[str, Any]) -> None:
        checkpoint = body.get("sd_model_checkpoint")
        if checkpoint is not None:
            if not isinstance(checkpoint, str):
                raise BadParameterError("sd_model_checkpoint must be a model title from GET /sdapi/v1/sd-models")
            spec = await anyio.to_thread.run_sync(lambda: a1111.find_model(services.studio().catalogue, checkpoint))
            options.select(spec.id)
        return None

    @api.get("/cmd-flags")
    async def cmd_flags() -> dict[str, Any]:
        return {"api": True, "nowebui": False, "api_auth": None, "listen": None, "port": None}

    @api.get("/scripts")
    async def scripts() -> dict[str, list[str]]:
        return {"txt2img": [], "img2img": []}

    for path, answer in NOTHING_HERE.items():
        api.add_api_route(path, _answering(answer), methods=["GET"])
    for path in ("/refresh-vae", "/refresh-loras"):
        api.add_api_route(path, _nothing_to_refresh, methods=["POST"])

    @api.get("/progress")
    async def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_progress, client_session(request), skip_current_image)

    @api.post("/interrupt")
    async def interrupt(request: Request) -> dict[str, Any]:
        await anyio.to_thread.run_sync(_interrupt, client_session(request))
        return {}

    @api.post("/skip")
    async def skip(request: Request) -> dict[str, Any]:
        await anyio.to_thread.run_sync(_interrupt, client_session(request))
        return {}

    @api.post("/png-info")
    async def png_info(body: PngInfoBody) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_png_info, body.image)

    return api


async def _nothing_to_refresh() -> None:
    return None


def _answering(answer: Any) -> Callable[[], Awaitable[Any]]:
    async def constant() -> Any:
        return copy.deepcopy(answer)

    return constant


async def ping(request: Request) -> JSONResponse:
    """A1111's `GET /internal/ping` (outside /sdapi/v1), which SillyTavern calls to check the server."""
    return JSONResponse({})


def _model_for(body: a1111.Txt2ImgBody, task: str, options: _Options):
    """override_settings.sd_model_checkpoint, else this server's option, else our default for the task."""
    catalogue = services.studio().catalogue
    named = body.checkpoint() or options.checkpoint()
    return a1111.find_model(catalogue, named) if named else runs.default_model(catalogue, task)


def _response(
    body: a1111.Txt2ImgBody, results: list[Result], warnings: list[str], size: tuple[int, int] | None
) -> dict[str, Any]:
    pngs = [png for result in results for png in result.pngs]
    if size is None:
        size = (results[0].parameters["width"], results[0].parameters["height"])
    return {
        "images": [Base64(png) for png in pngs] if body.send_images else [],  # encoded as the body is written
        "parameters": a1111.echoed_parameters(body),
        "info": a1111.info(results, size=size, warnings=warnings),
    }


def _options_body(options: _Options) -> dict[str, Any]:
    catalogue = services.studio().catalogue
    chosen = options.checkpoint()
    spec = catalogue.get(chosen) if chosen else _default_or_none(catalogue)
    return {
        "sd_model_checkpoint": spec.id if spec else None,
        "sd_checkpoint_hash": a1111.model_hash(spec) if spec else None,
        "samples_format": "png",
        "sd_vae": "Automatic",
        "CLIP_stop_at_last_layers": 1,
        "sd_checkpoints_limit": services.settings().max_resident_models,
    }


def _default_or_none(catalogue):
    try:
        return runs.default_model(catalogue, "txt2img")
    except BadParameterError:
        return None


def _mine(client: str) -> list[JobStatus]:
    return [status for status in services.queue().jobs(session=client) if not status.state.finished]


def _progress(client: str, skip_current_image: bool) -> dict[str, Any]:
    """A1111's progress of the caller's current job: the running one, else the next queued one."""
    mine = _mine(client)
    idle_state = {
        "skipped": False,
        "interrupted": False,
        "stopping_generation": False,
        "job": "",
        "job_count": 0,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
    if not mine:
        return {"progress": 0.0, "eta_relative": 0.0, "state": idle_state, "current_image": None, "textinfo": None}
    current = next((status for status in mine if status.state is JobState.RUNNING), mine[0])
    running = current.state is JobState.RUNNING
    state = {
        **idle_state,
        "interrupted": current.cancel_requested,
        "job": current.label,
        "job_count": len(mine),
        "sampling_step": current.step,
        "sampling_steps": current.total,
    }
    current_image = None
    if running and not skip_current_image:
        preview = services.queue().preview(current.id)
        if preview is not None:
            buffer = io.BytesIO()
            preview.save(buffer, "PNG")
            current_image = base64.b64encode(buffer.getvalue()).decode("ascii")
    text = (
        f"step {current.step} of {current.total}" if running else f"waiting: position {current.position} in the queue"
    )
    return {
        "progress": current.step / current.total if running and current.total else 0.0,
        "eta_relative": round(current.eta_s, 2) if current.eta_s is not None else 0.0,
        "state": state,
        "current_image": current_image,
        "textinfo": text,
    }


def _interrupt(client: str) -> None:
    """Cancel the caller's running job (or, with none running, its next queued one). A job that
    other clients or pages wait for too goes on for them."""
    mine = _mine(client)
    targets = [status for status in mine if status.state is JobState.RUNNING] or mine[:1]
    for status in targets:
        with contextlib.suppress(UnknownJobError):  # finished and dropped meanwhile
            services.queue().cancel(status.id, session=client)


def _png_info(image: str) -> dict[str, Any]:
    """A1111's png-info: the `parameters` text, the other text chunks, and the settings parsed."""
    data = base64_bytes(image, "image", BadImageError)
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise BadImageError("png-info reads PNGs; send one base64-encoded")
    try:
        with Image.open(io.BytesIO(data)) as opened:  # reads the chunks before the pixels, not the pixels
            chunks = {key: value for key, value in getattr(opened, "text", {}).items() if isinstance(value, str)}
    except (OSError, ValueError, SyntaxError):
        raise BadImageError("this PNG is damaged; its parameters cannot be read") from None
    text = chunks.pop("parameters", "")
    try:
        parsed = png_parameters(data)
    except BadImageError:  # a PNG with no parameters: A1111 answers with empty ones
        return {"info": text, "items": chunks, "parameters": {}}
    parameters = {
        "Prompt": parsed.fields.get("prompt", ""),
        "Negative prompt": parsed.fields.get("negative_prompt", ""),
        **parsed.settings,
    }
    width, _, height = parameters.get("Size", "").partition("x")
    if width and height:
        parameters["Size-1"], parameters["Size-2"] = width.strip(), height.strip()
    return {"info": text, "items": chunks, "parameters": parameters}


__all__ = ["PING_PATH", "SDAPI_PREFIX", "create_sdapi", "ping"]
