"""The API application: its routes, submitting to the shared queue and waiting for jobs off the event loop."""

from __future__ import annotations

import base64
import functools
import logging
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response

import core
from core import services
from core.api import runs
from core.api.auth import API_KEY_ENV, OPEN_PATHS, BodyLimit, RequireKey, client_session
from core.api.batches import add_batch_routes
from core.api.errors import JobOutcome, add_error_handlers
from core.api.health import HealthReader
from core.api.offload import Base64, admitted, heavy, json_response, quick
from core.api.schemas import (
    GenerateBody,
    GenerateResult,
    Health,
    InpaintBody,
    InpaintResult,
    JobBody,
    JobCreated,
    JobInfo,
    ModelInfo,
    OutpaintBody,
    SegmentBody,
    SegmentResult,
    error_responses,
)
from core.jobs import JobNotDoneError, JobQueue, JobStatus
from core.runner import Result, prompt_warnings_for

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
_SEGMENTERS = anyio.CapacityLimiter(2)  # selections at once (each holds a decoded photo)


_AUTH_ERRORS = (401, 413, 422)
_SUBMIT_ERRORS = (*_AUTH_ERRORS, 400, 404, 429, 503)


# -- the application -----------------------------------------------------------------------------


def create_api(*, sync_timeout_s: float | None = None, max_body_bytes: int | None = None) -> FastAPI:
    """The API as an ASGI app with routes at its root (`api_routes` mounts it under /api/v1).

    Unset arguments come from the settings (`STUDIO_API_SYNC_TIMEOUT_S`, `STUDIO_MAX_BODY_MB`).
    The key (`STUDIO_API_KEY`) is read on every request.
    """
    sync_timeout_s = services.settings().api_sync_timeout_s if sync_timeout_s is None else sync_timeout_s
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
    api.router.route_class = runs.ParsedOffTheLoopRoute
    api.openapi = functools.partial(_openapi_with_bearer, api)
    api.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    api.add_middleware(RequireKey)  # added last = outermost: no body is read for a client without the key
    add_error_handlers(api)

    # Every call into the services runs in a thread: the first one builds them (catalogue, store
    # on disk), and the queue's lock may be held by its worker for a moment. Health answers from
    # a snapshot on the loop while nothing changed (core/api/health.py).
    health_reader = HealthReader()

    @api.get("/health", response_model=Health, summary="Liveness and load; no key needed")
    async def health() -> dict[str, Any]:
        return await health_reader.read()

    @api.get(
        "/models", response_model=list[ModelInfo], responses=error_responses(*_AUTH_ERRORS), summary="The catalogue"
    )
    async def models() -> list[dict[str, Any]]:
        return await quick(_model_list)

    @api.post(
        "/generate",
        response_model=GenerateResult,
        responses=error_responses(*_SUBMIT_ERRORS, 409, 500, 504),
        summary="Text to image; waits for the result",
    )
    async def generate(body: GenerateBody, request: Request) -> Response:
        result = await _run_and_wait(body, request, sync_timeout_s)
        return await json_response(_result_body, result, "generate")

    @api.post(
        "/inpaint",
        response_model=InpaintResult,
        responses=error_responses(*_SUBMIT_ERRORS, 409, 500, 504),
        summary="Inpaint an image under a mask; waits for the result",
    )
    async def inpaint(body: InpaintBody, request: Request) -> Response:
        result = await _run_and_wait(body, request, sync_timeout_s)
        return await json_response(_result_body, result, "inpaint")

    @api.post(
        "/outpaint",
        response_model=InpaintResult,
        responses=error_responses(*_SUBMIT_ERRORS, 409, 500, 504),
        summary="Extend the canvas on any side or to an aspect ratio; waits for the result",
    )
    async def outpaint(body: OutpaintBody, request: Request) -> Response:
        result = await _run_and_wait(body, request, sync_timeout_s)
        return await json_response(_result_body, result, "outpaint")

    @api.post(
        "/segment",
        response_model=SegmentResult,
        responses=error_responses(*_AUTH_ERRORS, 400, 404, 503),
        summary="A mask of the object under clicked points and/or in a box (no queue: one decoder run per click)",
    )
    async def segment(body: SegmentBody) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_segment, body, limiter=_SEGMENTERS)

    @api.post(
        "/jobs",
        status_code=202,
        response_model=JobCreated,
        responses=error_responses(*_SUBMIT_ERRORS),
        summary="Queue a generate or inpaint job; answers at once",
    )
    async def create_job(body: JobBody, request: Request) -> JSONResponse:
        status = await heavy(_submit, body, client_session(request))
        created = {"id": status.id, "status": status.state.value, "position": status.position, "eta_s": _eta(status)}
        return JSONResponse(created, status_code=202, headers={"Location": f"{_mount_path(request)}/jobs/{status.id}"})

    @api.get(
        "/jobs/{job_id}",
        response_model=JobInfo,
        responses=error_responses(*_AUTH_ERRORS, 404),
        summary="A job's progress",
    )
    async def job_status(job_id: str) -> dict[str, Any]:
        return _job_body(await runs.on_job(job_id, JobQueue.status))

    @api.get(
        "/jobs/{job_id}/result",
        response_model=GenerateResult | InpaintResult,
        responses=error_responses(*_AUTH_ERRORS, 400, 404, 409, 500, 503),
        summary="A finished job's result (409 while it is not done)",
    )
    async def job_result(job_id: str) -> Response:
        try:
            result = await runs.on_job(job_id, JobQueue.result)
        except JobNotDoneError as not_done:
            raise JobOutcome(not_done.status) from None
        return await json_response(_result_body, result, result.parameters.get("task", "generate"))

    @api.delete(
        "/jobs/{job_id}", response_model=JobInfo, responses=error_responses(*_AUTH_ERRORS, 404), summary="Cancel a job"
    )
    async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
        # As this client: a job other clients or pages also wait for goes on for them.
        return _job_body(await runs.on_job(job_id, functools.partial(JobQueue.cancel, session=client_session(request))))

    add_batch_routes(api, _AUTH_ERRORS)
    return api


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


# -- submitting ------------------------------------------------------------------------------------


def _segment(body: SegmentBody) -> dict[str, Any]:
    """Decode, select, encode (blocking). The photo's embedding stays cached by its digest, so a
    client sending the same photo with new clicks pays only for the decoder."""
    from core.masks.files import mask_png

    request = body.to_request()
    mask = services.studio().segment(request)
    encoded = base64.b64encode(mask_png(mask)).decode("ascii")
    return {"mask": encoded, "width": mask.width, "height": mask.height, "model": request.model}


def _submit(body: GenerateBody | InpaintBody | OutpaintBody, client: str) -> JobStatus:
    """Validate, decode and enqueue (blocking: images are decoded and hashed here)."""
    runs.require_catalogue_model(body.model)  # before decoding anything
    with admitted(client):  # a queue place first: a client over its limit costs no decoding
        request = body.to_request()
        return runs.submit(request, client, label=f"API {request.task}")


async def _run_and_wait(body: GenerateBody | InpaintBody | OutpaintBody, request: Request, timeout_s: float) -> Result:
    status = await heavy(_submit, body, client_session(request))
    return await runs.wait_for(status, timeout_s)


# -- bodies ------------------------------------------------------------------------------------------


def _result_body(result: Result, task: str) -> dict[str, Any]:
    encoded = [Base64(png) for png in result.pngs]  # encoded as the body is written (offload.json_parts)
    parameters = result.parameters
    warnings = prompt_warnings_for(services.studio().catalogue.get(parameters["model"]), parameters)
    summary = {
        "seed": result.seed,
        "cached": result.cached,
        "parameters": parameters,
        "app_version": core.__version__,
        "warnings": list(warnings),
    }
    return {**summary, "images": encoded} if task in ("generate", "txt2img") else {**summary, "image": encoded[0]}


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
        "worker": status.worker,
        "attempts": status.attempts,
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


def _mount_path(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")
