"""How failures answer over HTTP: one status per core error code, one `Failure` per error, and a
renderer per API surface (`render_error` gives /api/v1's `{"error": {"code", "message"}}`; the
A1111 and OpenAI surfaces render the same failures in their own shapes)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import services
from core.api.offload import quick
from core.errors import StudioError
from core.jobs import JobNotDoneError, JobQueue, JobState, JobStatus
from core.requests import VALUE_ERRORS, describe

log = logging.getLogger(__name__)

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
    "result_gone": 410,
    "cancelled": 409,
    "body_too_large": 413,
    "busy": 429,
    "engine_error": 500,
    "internal": 500,
    "model_unavailable": 503,
    "misconfigured": 503,
    "out_of_memory": 503,
    "timeout": 504,
}
INTERNAL_MESSAGE = "unexpected server error; the details are in the server log"


# -- errors --------------------------------------------------------------------------------------------


class ApiError(StudioError):
    """An answer of the API's own, with its status: unknown job, timeout, a job's outcome."""

    def __init__(self, status: int, code: str, message: str, *, job_id: str | None = None):
        super().__init__(message)
        self.status, self.code, self.job_id = status, code, job_id


class SyncTimeout(ApiError):
    def __init__(self, job_id: str):
        message = f"the job is taking longer than this call waits; it goes on: poll GET /api/v1/jobs/{job_id}"
        super().__init__(504, "timeout", message, job_id=job_id)


class JobOutcome(ApiError):
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


@dataclass(frozen=True)
class Failure:
    """One failed request, whatever the surface: its status, stable code and one-line message."""

    status: int
    code: str
    message: str
    headers: dict[str, str] | None = None
    job_id: str | None = None
    param: str | None = None  # the request field at fault, when one is known


Render = Callable[[Failure], JSONResponse]


def render_error(failure: Failure) -> JSONResponse:
    """/api/v1's error body: `{"error": {"code", "message"[, "job_id"]}}`."""
    detail: dict[str, Any] = {"code": failure.code, "message": failure.message}
    if failure.job_id is not None:
        detail["job_id"] = failure.job_id
    return JSONResponse({"error": detail}, status_code=failure.status, headers=failure.headers)


def failure_of(request: Request, error: Exception) -> Failure:
    """What an exception raised while serving `request` answers, on every surface."""
    if isinstance(error, ApiError):
        return Failure(error.status, error.code, error.message, job_id=error.job_id)
    if isinstance(error, StudioError):
        headers = {"Retry-After": str(_retry_after(request))} if error.code == "busy" else None
        return Failure(
            STATUS_BY_CODE.get(error.code, 400), error.code, error.message, headers, param=getattr(error, "param", None)
        )
    if isinstance(error, RequestValidationError):
        errors = list(error.errors())
        if errors and all(detail.get("type") in VALUE_ERRORS for detail in errors):  # well-formed, out of bounds
            return Failure(400, "bad_parameter", describe(errors), param=_first_field(errors))
        return Failure(422, "invalid_request", _one_line(errors), param=_first_field(errors))
    if isinstance(error, StarletteHTTPException):
        codes = {404: ("not_found", "no such route"), 405: ("method_not_allowed", "method not allowed")}
        code, message = codes.get(error.status_code, ("invalid_request", "the request could not be read"))
        if error.status_code == 400:  # FastAPI could not parse the body (not UTF-8, say): the documented 422
            return Failure(422, "invalid_request", "the body is not valid JSON (UTF-8)")
        if error.status_code >= 500:
            code, message = "internal", INTERNAL_MESSAGE
        return Failure(error.status_code, code, message, error.headers)
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=error)
    return Failure(500, "internal", INTERNAL_MESSAGE)


def _first_field(errors: Any) -> str | None:
    for error in list(errors)[:1]:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        return location[-1] if location else None
    return None


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
    from core.api.auth import client_session  # auth renders its refusals with this module

    queue: JobQueue = services.queue()
    unfinished = [job for job in queue.jobs() if not job.state.finished]
    client = client_session(request)
    mine = [job for job in queue.jobs(session=client) if not job.state.finished]
    estimates = [job.eta_s for job in (mine or unfinished) if job.eta_s is not None]
    return min(600, max(1, math.ceil(min(estimates)))) if estimates else 10


def add_error_handlers(api: FastAPI, render: Render = render_error) -> None:
    """Every error the app raises answers through `render`, never as a traceback."""

    async def handle(request: Request, error: Exception) -> JSONResponse:
        if isinstance(error, StudioError) and error.code == "busy":  # its Retry-After reads the queue: off the loop
            return render(await quick(failure_of, request, error))
        return render(failure_of(request, error))

    for kind in (StudioError, RequestValidationError, StarletteHTTPException, Exception):
        api.add_exception_handler(kind, handle)
