"""Prompt batches over HTTP: `POST /batches` queues prompts x seeds as one group, driven to the end
in the server (the client need not stay connected); `GET /batches/{id}` shows every item,
`GET /batches/{id}/zip` downloads the PNGs with manifest.csv, `DELETE /batches/{id}` cancels
what has not finished. The same rows, expansion and manifest as the Batch page and the CLI
(core/prompt_batch.py).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from core import services
from core.api import runs
from core.api.auth import client_session
from core.api.errors import ApiError
from core.api.schemas import error_responses, request_fields
from core.batch import RequestRun, drive
from core.jobs import JobState
from core.prompt_batch import DEFAULT_SEEDS, MAX_ROWS, MAX_SEEDS, PromptRow, batch_zip, expand
from core.requests import GenerateRequest, fields

KEEP_BATCHES = 64  # finished batches are forgotten oldest first beyond this many


class PromptRowBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str
    negative_prompt: str | None = None
    seed: int | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = Field(None, description="num_inference_steps for this row")


class _BatchBase(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"model": "sd-turbo", "prompts": ["a red fox", "a blue bird"], "seeds": 2}]},
    )

    model: str = Field(description="A model id from GET /models; rows may name their own.")
    prompts: list[str | PromptRowBody] = Field(description="Prompts, or rows with their own settings.")
    seeds: int = Field(DEFAULT_SEEDS, description=f"images per prompt (seed, seed+1, ...), 1..{MAX_SEEDS}")

    def template(self) -> GenerateRequest:
        """The settings every row starts from (a row's own values replace them)."""
        return GenerateRequest(model=self.model, **self.model_dump(include=set(TEMPLATE_FIELDS)))


# The batch's settings for every prompt: the request schema's fields (types, bounds, defaults, docs), not copies.
TEMPLATE_FIELDS = ("negative_prompt", "width", "height", "num_inference_steps", "guidance_scale", "scheduler", "seed")
_SEED_ANNOTATION = fields(GenerateRequest)["seed"].annotation
BatchBody = create_model(
    "BatchBody",
    __base__=_BatchBase,
    **{
        **request_fields(GenerateRequest, only=TEMPLATE_FIELDS),
        "seed": (_SEED_ANNOTATION, Field(None, description="Every prompt's first seed; unset: one drawn per prompt.")),
    },
)


class BatchItemInfo(BaseModel):
    name: str
    prompt: str
    model: str
    seed: int | None
    status: Literal["waiting", "queued", "running", "done", "failed", "cancelled", "refused"]
    job_id: str | None
    cached: bool
    error: str | None


class BatchInfo(BaseModel):
    id: str
    status: Literal["running", "done", "cancelled"]
    total: int
    done: int
    failed: int
    items: list[BatchItemInfo]


@dataclass
class _Batch:
    run: RequestRun
    client: str
    lock: threading.Lock


_batches: OrderedDict[str, _Batch] = OrderedDict()
_registry_lock = threading.Lock()


def add_batch_routes(api: FastAPI, auth_errors: tuple[int, ...]) -> None:
    @api.post(
        "/batches",
        status_code=202,
        response_model=BatchInfo,
        responses=error_responses(*auth_errors, 400, 404),
        summary="Queue prompts x seeds as one batch; answers at once",
    )
    async def create_batch(body: BatchBody, request: Request) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_create, body, client_session(request))

    @api.get("/batches/{batch_id}", response_model=BatchInfo, responses=error_responses(*auth_errors, 404))
    async def batch_status(batch_id: str) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_info, batch_id)

    @api.get(
        "/batches/{batch_id}/zip",
        response_class=Response,
        responses={200: {"content": {"application/zip": {}}}, **error_responses(*auth_errors, 404)},
        summary="The finished images and manifest.csv (what is done so far, while it runs)",
    )
    async def batch_download(batch_id: str) -> Response:
        data = await anyio.to_thread.run_sync(_zip, batch_id)
        headers = {"Content-Disposition": f'attachment; filename="batch-{batch_id}.zip"'}
        return Response(data, media_type="application/zip", headers=headers)

    @api.delete("/batches/{batch_id}", response_model=BatchInfo, responses=error_responses(*auth_errors, 404))
    async def cancel_batch(batch_id: str, request: Request) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_cancel, batch_id)


def _create(body: BatchBody, client: str) -> dict[str, Any]:
    if len(body.prompts) > MAX_ROWS:
        raise ApiError(400, "bad_parameter", f"{len(body.prompts)} prompts; the limit is {MAX_ROWS} per batch")
    runs.require_catalogue_model(body.model)
    rows = [_row(number, entry) for number, entry in enumerate(body.prompts, start=1)]
    for row in rows:
        if row.model is not None:
            runs.require_catalogue_model(row.model)
    run = RequestRun(expand(rows, body.template(), seeds=body.seeds), kind="api-batch")
    batch = _Batch(run, client, threading.Lock())
    batch_id = secrets.token_hex(8)
    with _registry_lock:
        _batches[batch_id] = batch
        while len(_batches) > KEEP_BATCHES:
            _batches.popitem(last=False)
    drive(run, services.queue(), client, batch.lock, in_flight=services.settings().max_jobs_per_session)
    return _info(batch_id)


def _row(number: int, entry: str | PromptRowBody) -> PromptRow:
    if isinstance(entry, str):
        return PromptRow(number, entry.strip(), problem=None if entry.strip() else "the prompt is empty")
    fields = entry.model_dump(exclude={"steps"}) | {"num_inference_steps": entry.steps}
    prompt = fields.pop("prompt").strip()
    return PromptRow(number, prompt, problem=None if prompt else "the prompt is empty", **fields)


def _get(batch_id: str) -> _Batch:
    with _registry_lock:
        batch = _batches.get(batch_id)
    if batch is None:
        raise ApiError(404, "unknown_job", "unknown batch; finished batches are kept for a while, then dropped")
    return batch


def _info(batch_id: str) -> dict[str, Any]:
    batch = _get(batch_id)
    queue = services.queue()
    with batch.lock:
        views = batch.run.views(queue)
        items = []
        for item, view in zip(batch.run.items, views, strict=True):
            status = view.status
            if status is not None:
                state = status.state.value
            else:
                state = "refused" if view.problem else ("waiting" if view.waiting else "cancelled")
            error = item.problem or (status.error if status is not None else None)
            items.append(
                {
                    "name": item.name,
                    "prompt": item.request.prompt,
                    "model": item.request.model,
                    "seed": item.request.seed,
                    "status": state,
                    "job_id": item.job_id,
                    "cached": bool(status is not None and status.cached),
                    "error": error,
                }
            )
        finished = all(view.finished for view in views)
    overall = "running" if not finished else ("cancelled" if batch.run.cancelled else "done")
    done = sum(entry["status"] == JobState.DONE.value for entry in items)
    failed = sum(entry["status"] in ("failed", "refused", "cancelled") for entry in items)
    return {"id": batch_id, "status": overall, "total": len(items), "done": done, "failed": failed, "items": items}


def _zip(batch_id: str) -> bytes:
    batch = _get(batch_id)
    with batch.lock:
        batch.run.views(services.queue())  # reads what finished since the last poll
        return batch_zip(batch.run.items, dict(batch.run.problems()))


def _cancel(batch_id: str) -> dict[str, Any]:
    batch = _get(batch_id)
    with batch.lock:
        batch.run.cancel(services.queue(), batch.client)
    return _info(batch_id)


__all__ = ["add_batch_routes"]
