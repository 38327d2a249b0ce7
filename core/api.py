"""The REST API under /api/v1: the pages' queue, model pool and result cache, over HTTP.

`streamlit run Home.py` serves it from the same process as the pages (Home.py passes
`api_routes()` to `st.App`), so a request made here and the same request made on a page share one
job queue, one model pool and one result store: `core.services` holds them for the process.

Handlers never run inference: they validate, enqueue on the shared queue and await the job with
the blocking wait in a worker thread (a limiter of its own, so waiting clients never take the
threads Streamlit serves its files with). Every failure leaves as `{"error": {"code", "message"}}`
with the matching status; details of unexpected failures go to the server log only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import core
from core import images, masks, services
from core.errors import BadImageError, BadMaskError, StudioError, UnknownModelError
from core.jobs import JobNotDoneError, JobQueue, JobState, JobStatus
from core.prompts import prompt_warnings
from core.requests import GenerateRequest, InpaintRequest
from core.runner import Request as CoreRequest
from core.runner import Result, Studio

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
API_KEY_ENV = "STUDIO_API_KEY"
SYNC_TIMEOUT_ENV = "STUDIO_API_SYNC_TIMEOUT_S"
DEFAULT_SYNC_TIMEOUT_S = 300.0
OPEN_PATHS = frozenset({"/health"})  # everything else needs the key when one is set

_WAIT_SLICE_S = 1.0  # a waiting request holds a thread at most this long at a time
# Threads for waiting on jobs, apart from anyio's default pool (Streamlit serves its static files
# from that one). Waiters beyond this many wait for a thread without blocking anything.
_WAITERS = anyio.CapacityLimiter(64)

# How each core error code answers over HTTP. Codes not listed are user errors (400).
STATUS_BY_CODE = {
    "bad_image": 400,
    "bad_mask": 400,
    "bad_parameter": 400,
    "invalid_request": 422,
    "unauthorized": 401,
    "unknown_model": 404,
    "unknown_job": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "job_not_done": 409,
    "cancelled": 409,
    "body_too_large": 413,
    "busy": 429,
    "engine_error": 500,
    "internal": 500,
    "model_unavailable": 503,
    "out_of_memory": 503,
    "timeout": 504,
}
INTERNAL_MESSAGE = "unexpected server error; the details are in the server log"


# -- request bodies: field names are the core requests' names ------------------------------------


def _core_default(request_type: type, name: str) -> Any:
    return request_type.__dataclass_fields__[name].default


class _SamplingBody(BaseModel):
    # strict: "5" is not a number and 2.5 is not a step count; unknown fields are typos, refused
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(description="A model id from GET /models (never a path or a hub id).")
    prompt: str = ""
    negative_prompt: str = ""
    num_inference_steps: int | None = Field(None, description="null: the model's default")
    guidance_scale: float | None = Field(None, description="null: the model's default")
    seed: int | None = Field(None, description="0..4294967295; null: a random seed, reported in the result")
    scheduler: str | None = Field(None, description="null: the model's default")


class GenerateBody(_SamplingBody):
    width: int | None = Field(None, description="null: the model's working resolution")
    height: int | None = Field(None, description="null: the model's working resolution")
    num_images: int = _core_default(GenerateRequest, "num_images")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "sd-turbo", "prompt": "a red fox in the snow", "seed": 42}]}
    )

    def to_request(self) -> GenerateRequest:
        return GenerateRequest(**self.model_dump(exclude={"task"}))


class InpaintBody(_SamplingBody):
    image: str = Field(description="The image, base64 PNG/JPEG/WebP (a data: URL prefix is accepted).")
    mask: str = Field(
        description="The mask, base64 PNG/WebP, the image's size or aspect: white (or opaque) = repaint, black = keep."
    )
    strength: float = _core_default(InpaintRequest, "strength")
    mask_blur: int = _core_default(InpaintRequest, "mask_blur")
    mask_grow: int = _core_default(InpaintRequest, "mask_grow")
    invert_mask: bool = _core_default(InpaintRequest, "invert_mask")
    padding: int = _core_default(InpaintRequest, "padding")
    whole_image: bool = _core_default(InpaintRequest, "whole_image")

    def to_request(self) -> InpaintRequest:
        """Decodes the pixels: call it in a worker thread."""
        limits = services.studio().image_limits
        image = images.load_image(_base64_bytes(self.image, "image", BadImageError), limits)
        mask = masks.mask_from_image(_base64_bytes(self.mask, "mask", BadMaskError), image.size, limits)
        return InpaintRequest(**self.model_dump(exclude={"task", "image", "mask"}), image=image, mask=mask)


class GenerateJobBody(GenerateBody):
    task: Literal["generate"]


class InpaintJobBody(InpaintBody):
    task: Literal["inpaint"]


JobBody = Annotated[GenerateJobBody | InpaintJobBody, Field(discriminator="task")]

_BASE64_SPACE = re.compile(rb"\s+")
_DATA_URL = re.compile(rb"^data:[\w.+/-]*(;[\w=.-]+)*;base64,")


def _base64_bytes(text: str, name: str, error: type[StudioError]) -> bytes:
    raw = _DATA_URL.sub(b"", _BASE64_SPACE.sub(b"", text.encode("utf-8", "replace")), count=1)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{name} is not valid base64; send the file's bytes base64-encoded") from None
    if not data:
        raise error(f"{name} is empty; send a PNG, JPEG or WebP file base64-encoded")
    return data


# -- response bodies (for the schema; handlers return plain dicts) ---------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str
    job_id: str | None = Field(None, description="With 504: the job goes on; poll GET /jobs/{job_id}.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    device: str
    queue_length: int
    pid: int


class ModelInfo(BaseModel):
    id: str
    name: str
    tasks: list[str]
    engine: str
    available: bool
    detail: str = Field(description="Why it cannot run now and how to get it, or where it runs from.")


class _ResultBody(BaseModel):
    seed: int
    cached: bool
    parameters: dict[str, Any] = Field(description="Every parameter, as stored in the PNGs.")
    app_version: str
    warnings: list[str] = Field(default=[], description="For people, e.g. a prompt the text encoder cuts short.")


class GenerateResult(_ResultBody):
    images: list[str] = Field(description="base64 PNGs carrying their parameters")


class InpaintResult(_ResultBody):
    image: str = Field(description="base64 PNG carrying its parameters")


class JobCreated(BaseModel):
    id: str
    status: JobState
    position: int
    eta_s: float | None


class JobInfo(BaseModel):
    id: str
    status: JobState
    position: int = Field(description="1 = next to run; 0 when running or finished")
    step: int
    total: int
    eta_s: float | None = Field(description="seconds until done, the wait included; null: no estimate yet")
    elapsed_s: float
    error: str | None
    error_code: str | None
    cached: bool
    cancel_requested: bool


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


_AUTH_ERRORS = (401, 413, 422)
_SUBMIT_ERRORS = (*_AUTH_ERRORS, 400, 404, 429, 503)


# -- the application -----------------------------------------------------------------------------


def api_routes() -> list[BaseRoute]:
    """What Home.py passes to `st.App(..., routes=...)`. Costs nothing until the first request:
    Home.py runs this on every page rerun, and only the instance the server mounted ever serves."""
    return [Mount(API_PREFIX, app=_BuiltOnFirstRequest(create_api))]


class _BuiltOnFirstRequest:
    def __init__(self, build: Callable[[], ASGIApp]):
        self._build = build
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:  # no await before this assignment: one event loop builds it once
            self._app = self._build()
        await self._app(scope, receive, send)


def create_api(*, sync_timeout_s: float | None = None, max_body_bytes: int | None = None) -> FastAPI:
    """The API as an ASGI app with routes at its root (`api_routes` mounts it under /api/v1).

    Unset arguments come from the environment: `STUDIO_API_SYNC_TIMEOUT_S` (default 300) and
    `STUDIO_MAX_BODY_MB` (Settings). The key (`STUDIO_API_KEY`) is read on every request.
    """
    sync_timeout_s = _sync_timeout_from_env() if sync_timeout_s is None else sync_timeout_s
    if not sync_timeout_s > 0:
        raise ValueError("the synchronous timeout must be positive")
    max_body_bytes = services.settings().max_body_bytes if max_body_bytes is None else max_body_bytes

    api = FastAPI(
        title="Canvas Studio API",
        version=core.__version__,
        description="Text-to-image and inpainting through the studio's shared queue and result cache.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url="/redoc",
    )
    api.openapi = functools.partial(_openapi_with_bearer, api)
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    api.add_middleware(RequireKey)  # added last = outermost: no body is read for a client without the key
    api.add_exception_handler(StudioError, _on_studio_error)
    api.add_exception_handler(RequestValidationError, _on_invalid_request)
    api.add_exception_handler(StarletteHTTPException, _on_http_exception)
    api.add_exception_handler(Exception, _on_unexpected)

    # Every call into the services runs in a thread: the first one builds them (catalogue, store
    # on disk), and the queue's lock may be held by its worker for a moment.
    @api.get("/health", response_model=Health, summary="Liveness and load; no key needed")
    async def health() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_health)

    @api.get("/models", response_model=list[ModelInfo], responses=_errors(*_AUTH_ERRORS), summary="The catalogue")
    async def models() -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(_model_list)

    @api.post(
        "/generate",
        response_model=GenerateResult,
        responses=_errors(*_SUBMIT_ERRORS, 409, 500, 504),
        summary="Text to image; waits for the result",
    )
    async def generate(body: GenerateBody, request: Request) -> dict[str, Any]:
        result = await _run_and_wait(body, request, sync_timeout_s)
        return _result_body(result, "generate")

    @api.post(
        "/inpaint",
        response_model=InpaintResult,
        responses=_errors(*_SUBMIT_ERRORS, 409, 500, 504),
        summary="Inpaint an image under a mask; waits for the result",
    )
    async def inpaint(body: InpaintBody, request: Request) -> dict[str, Any]:
        result = await _run_and_wait(body, request, sync_timeout_s)
        return _result_body(result, "inpaint")

    @api.post(
        "/jobs",
        status_code=202,
        response_model=JobCreated,
        responses=_errors(*_SUBMIT_ERRORS),
        summary="Queue a generate or inpaint job; answers at once",
    )
    async def create_job(body: JobBody, request: Request) -> JSONResponse:
        status = await anyio.to_thread.run_sync(_submit, body, _client(request))
        created = {"id": status.id, "status": status.state.value, "position": status.position, "eta_s": _eta(status)}
        return JSONResponse(created, status_code=202, headers={"Location": f"{_mount_path(request)}/jobs/{status.id}"})

    @api.get("/jobs/{job_id}", response_model=JobInfo, responses=_errors(*_AUTH_ERRORS, 404), summary="A job's progress")
    async def job_status(job_id: str) -> dict[str, Any]:
        return _job_body(await _on_job(job_id, JobQueue.status))

    @api.get(
        "/jobs/{job_id}/result",
        response_model=GenerateResult | InpaintResult,
        responses=_errors(*_AUTH_ERRORS, 400, 404, 409, 500, 503),
        summary="A finished job's result (409 while it is not done)",
    )
    async def job_result(job_id: str) -> dict[str, Any]:
        try:
            result = await _on_job(job_id, JobQueue.result)
        except JobNotDoneError as not_done:
            raise _JobOutcome(not_done.status) from None
        return _result_body(result, "inpaint" if result.parameters.get("task") == "inpaint" else "generate")

    @api.delete("/jobs/{job_id}", response_model=JobInfo, responses=_errors(*_AUTH_ERRORS, 404), summary="Cancel a job")
    async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
        # As this client: a job other clients or pages also wait for goes on for them.
        return _job_body(await _on_job(job_id, functools.partial(JobQueue.cancel, session=_client(request))))

    return api


def _sync_timeout_from_env() -> float:
    raw = os.environ.get(SYNC_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_SYNC_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SYNC_TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{SYNC_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def _openapi_with_bearer(api: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the bearer key every route but /health takes (checked by RequireKey)."""
    if api.openapi_schema is None:
        schema = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": f"only when {API_KEY_ENV} is set"}
        }
        for path, operations in schema["paths"].items():
            if path not in OPEN_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {}]  # {}: servers without a key
        api.openapi_schema = schema
    return api.openapi_schema


# -- submitting and waiting ------------------------------------------------------------------------


def _client(request: Request) -> str:
    """The queue session of an API client: its address, so one client cannot fill the queue. (Not
    the key: every client holds the same one. Not X-Forwarded-For: anyone can send that; uvicorn
    already applies it for trusted proxies.)"""
    return f"api:{request.client.host if request.client else 'unknown'}"


def _submit(body: GenerateBody | InpaintBody, client: str) -> JobStatus:
    """Validate, decode and enqueue (blocking: images are decoded and hashed here)."""
    studio, queue = services.studio(), services.queue()
    # 1. Only catalogue ids: never a path or a hub id, and never echo what was sent.
    if body.model not in {spec.id for spec in studio.catalogue}:
        raise UnknownModelError("unknown model; GET /api/v1/models lists the model ids")
    request = body.to_request()
    # 2. A model this machine lacks is refused now (503) unless its result is already stored.
    _require_runnable(studio, request)
    job_id = queue.submit(request, session=client, label=f"API {request.task}")
    return queue.status(job_id)


def _require_runnable(studio: Studio, request: CoreRequest) -> None:
    spec = studio.catalogue.get(request.model)
    if spec.availability().ready:
        return
    prepared = studio.prepare(request)  # bad input is still a 400, whatever the model
    if request.seed is not None and studio.cached(prepared) is not None:
        return
    spec.require_available()


async def _run_and_wait(body: GenerateBody | InpaintBody, request: Request, timeout_s: float) -> Result:
    status = await anyio.to_thread.run_sync(_submit, body, _client(request))
    deadline = time.monotonic() + timeout_s
    while not status.state.finished:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _SyncTimeout(status.id)
        wait = functools.partial(JobQueue.wait, timeout=min(_WAIT_SLICE_S, remaining))
        status = await _on_job(status.id, wait, limiter=_WAITERS)
    if status.state is not JobState.DONE:
        raise _JobOutcome(status)
    return await _on_job(status.id, JobQueue.result)


async def _on_job(job_id: str, action: Callable[[JobQueue, str], Any], limiter: anyio.CapacityLimiter | None = None) -> Any:
    """`action(queue, job_id)` in a worker thread; an unknown (or long dropped) id answers 404."""

    def run() -> Any:
        try:
            return action(services.queue(), job_id)
        except KeyError:
            raise _ApiError(404, "unknown_job", "unknown job; finished jobs are kept for a while, then dropped") from None

    return await anyio.to_thread.run_sync(run, limiter=limiter)


# -- bodies ------------------------------------------------------------------------------------------


def _result_body(result: Result, task: str) -> dict[str, Any]:
    encoded = [base64.b64encode(png).decode("ascii") for png in result.pngs]
    parameters = result.parameters
    clip_encoded = str(parameters.get("engine", "")).startswith("diffusers-")
    warnings = prompt_warnings(parameters.get("prompt", ""), parameters.get("negative_prompt", "")) if clip_encoded else ()
    summary = {
        "seed": result.seed,
        "cached": result.cached,
        "parameters": parameters,
        "app_version": core.__version__,
        "warnings": list(warnings),
    }
    return {**summary, "image": encoded[0]} if task == "inpaint" else {**summary, "images": encoded}


def _eta(status: JobStatus) -> float | None:
    return None if status.eta_s is None else round(status.eta_s, 1)


def _job_body(status: JobStatus) -> dict[str, Any]:
    return {
        "id": status.id,
        "status": status.state.value,
        "position": status.position,
        "step": status.step,
        "total": status.total,
        "eta_s": _eta(status),
        "elapsed_s": round(status.elapsed_s, 2),
        "error": status.error,
        "error_code": status.error_code,
        "cached": status.cached,
        "cancel_requested": status.cancel_requested,
    }


def _health() -> dict[str, Any]:
    return {
        "status": "ok",
        "version": core.__version__,
        "device": _device(),
        "queue_length": services.queue().queue_length(),
        "pid": os.getpid(),
    }


def _model_list() -> list[dict[str, Any]]:
    listed = []
    for spec in services.studio().catalogue:
        availability = spec.availability()
        listed.append(
            {
                "id": spec.id,
                "name": spec.name,
                "tasks": list(spec.tasks),
                "engine": spec.engine,
                "available": availability.ready,
                "detail": availability.detail,
            }
        )
    return listed


@functools.cache
def _device() -> str:
    """The device inference runs on. torch is imported here, on the first call, never at import."""
    from core.devices import active_device

    try:
        return active_device(services.settings().device)
    except StudioError as error:  # a bad STUDIO_DEVICE: health still answers, and says so
        return f"misconfigured: {error.message}"


def _mount_path(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


# -- errors --------------------------------------------------------------------------------------------


class _ApiError(StudioError):
    """An answer of the API's own, with its status: unknown job, timeout, a job's outcome."""

    def __init__(self, status: int, code: str, message: str, *, job_id: str | None = None):
        super().__init__(message)
        self.status, self.code, self.job_id = status, code, job_id


class _SyncTimeout(_ApiError):
    def __init__(self, job_id: str):
        message = f"the job is taking longer than this call waits; it goes on: poll GET /api/v1/jobs/{job_id}"
        super().__init__(504, "timeout", message, job_id=job_id)


class _JobOutcome(_ApiError):
    """A job that did not end with a result: failed (its error), cancelled, or not done yet (409)."""

    def __init__(self, status: JobStatus):
        if status.state is JobState.FAILED:
            code = status.error_code or "internal"
            message = status.error or INTERNAL_MESSAGE
        elif status.state is JobState.CANCELLED:
            code, message = "cancelled", "the job was cancelled; it has no result"
        else:
            code, message = "job_not_done", JobNotDoneError(status).message
        super().__init__(STATUS_BY_CODE.get(code, 400), code, message, job_id=status.id)


def _error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None, job_id: str | None = None) -> JSONResponse:
    detail: dict[str, Any] = {"code": code, "message": message}
    if job_id is not None:
        detail["job_id"] = job_id
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


async def _on_studio_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StudioError)
    if isinstance(error, _ApiError):
        return _error_response(error.status, error.code, error.message, job_id=error.job_id)
    headers = {"Retry-After": str(_retry_after(request))} if error.code == "busy" else None
    return _error_response(STATUS_BY_CODE.get(error.code, 400), error.code, error.message, headers=headers)


async def _on_invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return _error_response(422, "invalid_request", _one_line(error.errors()))


async def _on_http_exception(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    codes = {404: ("not_found", "no such route; see /api/v1/docs"), 405: ("method_not_allowed", "method not allowed")}
    code, message = codes.get(error.status_code, ("invalid_request", "the request could not be read"))
    if error.status_code >= 500:
        code, message = "internal", INTERNAL_MESSAGE
    return _error_response(error.status_code, code, message, headers=error.headers)


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=error)
    return _error_response(500, "internal", INTERNAL_MESSAGE)


def _one_line(errors: Any) -> str:
    """Pydantic's errors as one line: `field: problem` (the values sent are never echoed)."""
    parts = []
    for error in list(errors)[:3]:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        where = ".".join(location[1:] if location and location[0] in ("generate", "inpaint") else location)
        if error.get("type") in ("union_tag_not_found", "union_tag_invalid"):
            parts.append("task must be 'generate' or 'inpaint'")
        elif error.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
        elif error.get("type") == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        elif error.get("type") == "missing" and not where:
            parts.append("the JSON body is missing")
        else:
            parts.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    more = len(list(errors)) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _retry_after(request: Request) -> int:
    """Seconds until a slot frees: the soonest end among this client's jobs (per-client limit), or
    among all unfinished jobs (queue full); 10 when nothing has an estimate yet."""
    queue: JobQueue = services.queue()
    unfinished = [job for job in queue.jobs() if not job.state.finished]
    client = _client(request)
    mine = [job for job in queue.jobs(session=client) if not job.state.finished]
    estimates = [job.eta_s for job in (mine or unfinished) if job.eta_s is not None]
    return min(600, max(1, math.ceil(min(estimates)))) if estimates else 10


# -- middleware: key and body cap -----------------------------------------------------------------------


def _bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _route_path(scope: Scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


async def _send_error(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class RequireKey:
    """With `STUDIO_API_KEY` set, every route but /health needs `Authorization: Bearer <key>`.

    The key is read on every request (a rotated key applies at once) and compared in constant
    time; it is never logged or echoed.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = os.environ.get(API_KEY_ENV, "").strip()
        if scope["type"] != "http" or not expected or _route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        token = _bearer_token(header)
        if token is None:
            message = "this API needs a key: send the header 'Authorization: Bearer <key>'"
        elif not hmac.compare_digest(token.encode("latin-1", "replace"), expected.encode("utf-8")):
            message = "the API key is wrong"
        else:
            await self.app(scope, receive, send)
            return
        await _send_error(send, 401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413 before reading them: by Content-Length at once,
    and by counting the bytes of a streamed (chunked) body as they arrive. The body is read here
    in full (the JSON parser needs all of it anyway) and handed to the app unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over the {self._limit_text()} limit (STUDIO_MAX_BODY_MB)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, "invalid_request", "the Content-Length header is not a number")
                return
            if int(declared) > self.max_bytes:
                await _send_error(send, 413, "body_too_large", too_large)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, "body_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _limit_text(self) -> str:
        megabytes = self.max_bytes / (1024 * 1024)
        return f"{megabytes:g} MB" if megabytes >= 1 else f"{self.max_bytes} bytes"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the client's disconnect, as usual

    return replayed


__all__ = ["API_PREFIX", "api_routes", "create_api"]
