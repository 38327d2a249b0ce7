"""Submitting core requests to the shared queue and waiting for them, as every API surface does.

Blocking calls (`submit`, `submit_all`: images are hashed, the queue's lock taken) run in worker
threads; `wait_for` waits in slices on a thread limiter of its own, so waiting clients never take
the threads Streamlit serves its files with.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any

import anyio
from fastapi import Request, Response
from fastapi.routing import APIRoute

from core import services
from core.admission import PLACES
from core.api.errors import JobOutcome, SyncTimeout
from core.catalogue import Catalogue, ModelSpec
from core.errors import BadParameterError, UnknownModelError
from core.jobs import JobQueue, JobState, JobStatus, UnknownJobError
from core.runner import Request as CoreRequest
from core.runner import Result, Studio

_WAIT_SLICE_S = 1.0  # a waiting request holds a thread at most this long at a time
# Threads for waiting on jobs, apart from anyio's default pool (Streamlit serves its static files
# from that one). Waiters beyond this many wait for a thread without blocking anything.
_WAITERS = anyio.CapacityLimiter(64)


class _ParsedOffTheLoop(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = await anyio.to_thread.run_sync(json.loads, body)
        return self._json


class ParsedOffTheLoopRoute(APIRoute):
    """Every surface's routes: request bodies (up to STUDIO_MAX_BODY_MB) are parsed in a worker thread,
    since the API shares its event loop with every page's websocket, which a 50 MB `json.loads` would stall."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self.body_field:  # no body to parse: the route as FastAPI builds it
            return handler

        async def parsed_off_the_loop(request: Request) -> Response:
            return await handler(_ParsedOffTheLoop(request.scope, request.receive))

        return parsed_off_the_loop


def ready_generative_models(catalogue: Catalogue) -> list[ModelSpec]:
    """What the client APIs list as their models: the generative ones that can run now."""
    return [spec for spec in catalogue if spec.generative and spec.availability().ready]


def default_model(catalogue: Catalogue, task: str) -> ModelSpec:
    """The model for a client that names none: the pages' default (a hosted model on a GPU-less
    host, when one can run), else the first generative model for `task` that can run now, else the
    first there is (its requests then say how to get it)."""
    preferred = catalogue.default_generative_model(task)
    if preferred is not None:
        return catalogue.get(preferred)
    candidates = [spec for spec in catalogue.for_task(task) if spec.generative] or catalogue.for_task(task)
    if not candidates:
        raise BadParameterError(f"no model in the catalogue can do {task}")
    return next((spec for spec in candidates if spec.availability().ready), candidates[0])


def require_catalogue_model(model: str) -> None:
    """Only catalogue ids: never a path or a hub id, and never echo what was sent."""
    if model not in {spec.id for spec in services.studio().catalogue}:
        raise UnknownModelError("unknown model; GET /api/v1/models lists the model ids")


def submit(request: CoreRequest, client: str, label: str) -> JobStatus:
    """Validate and enqueue one request as `client` (blocking)."""
    studio, queue = services.studio(), services.queue()
    require_catalogue_model(request.model)
    # A model this machine lacks is refused now (503) unless its result is already stored.
    _require_runnable(studio, request)
    job_id = queue.submit(request, session=client, label=label)
    PLACES.submitted()  # the queue counts this job from now on
    return queue.status(job_id)


def submit_all(
    requests: Sequence[CoreRequest], client: str, label: str, *, field_names: Mapping[str, str] | None = None
) -> list[JobStatus]:
    """All of them or none: when one is refused, the ones already queued are cancelled (blocking).

    `field_names` maps our request fields to the names the client sent them under, so a refusal
    speaks the client's language ("steps must be...", not "num_inference_steps must be...")."""
    statuses: list[JobStatus] = []
    try:
        for request in requests:
            statuses.append(submit(request, client, label))
    except BaseException as error:
        for status in statuses:
            services.queue().cancel(status.id, session=client)
        if isinstance(error, BadParameterError) and field_names:
            raise _renamed(error, field_names) from None
        raise
    return statuses


@contextlib.contextmanager
def in_client_words(field_names: Mapping[str, str]) -> Iterator[None]:
    """Building a request refuses bad values at once: say so with the client's field names too."""
    try:
        yield
    except BadParameterError as error:
        raise _renamed(error, field_names) from None


def _renamed(error: BadParameterError, field_names: Mapping[str, str]) -> BadParameterError:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, field_names)) + r")\b")
    found = pattern.findall(error.message)
    if not found:
        return error
    renamed = BadParameterError(pattern.sub(lambda match: field_names[match[1]], error.message))
    renamed.param = field_names[found[0]]  # OpenAI's errors name the field
    return renamed


def _require_runnable(studio: Studio, request: CoreRequest) -> None:
    spec = studio.catalogue.get(request.model)
    if spec.availability().ready:
        return
    prepared = studio.prepare(request)  # bad input is still a 400, whatever the model
    if request.seed is not None and studio.cached(prepared) is not None:
        return
    spec.require_available()


async def wait_for(status: JobStatus, timeout_s: float) -> Result:
    """The job's result once done; SyncTimeout (504, the job goes on) after `timeout_s`, JobOutcome
    when it failed or was cancelled."""
    deadline = time.monotonic() + timeout_s
    while not status.state.finished:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SyncTimeout(status.id)
        wait = functools.partial(JobQueue.wait, timeout=min(_WAIT_SLICE_S, remaining))
        status = await on_job(status.id, wait, limiter=_WAITERS)
    if status.state is not JobState.DONE:
        raise JobOutcome(status)
    return await on_job(status.id, JobQueue.result)


async def wait_for_all(statuses: Sequence[JobStatus], client: str, timeout_s: float) -> list[Result]:
    """Every job's result, in order; on the first failure the others are cancelled for this client."""
    deadline = time.monotonic() + timeout_s
    results = []
    try:
        for status in statuses:
            results.append(await wait_for(status, max(0.001, deadline - time.monotonic())))
    except SyncTimeout:
        raise  # the jobs go on, as the answer says
    except BaseException:
        rest = statuses[len(results) + 1 :]
        await anyio.to_thread.run_sync(_cancel_all, [status.id for status in rest], client)
        raise
    return results


def _cancel_all(job_ids: Sequence[str], client: str) -> None:
    queue = services.queue()
    for job_id in job_ids:
        with contextlib.suppress(UnknownJobError):  # finished and dropped meanwhile
            queue.cancel(job_id, session=client)


async def on_job(
    job_id: str, action: Callable[[JobQueue, str], Any], limiter: anyio.CapacityLimiter | None = None
) -> Any:
    """`action(queue, job_id)` in a worker thread; an unknown (or long dropped) id answers 404
    (UnknownJobError)."""

    def run() -> Any:
        return action(services.queue(), job_id)

    return await anyio.to_thread.run_sync(run, limiter=limiter)


__all__ = ["on_job", "submit", "submit_all", "wait_for", "wait_for_all"]
