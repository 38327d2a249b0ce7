"""The process-wide job queue: every inference (pages, batch runner, API, CLI) runs through it.

One worker thread per device runs jobs first in, first out, so a pipeline is never called from
two threads at once; this process drives one device, so a `JobQueue` has one worker. Everything
else here only bookkeeps, under one lock: queue positions, progress, an ETA learned from measured
step times, live previews, cancel, sharing identical requests, and dropping jobs nobody watches.

Sessions: every submit names the session that watches the job (a Streamlit session id, an API
client, "cli"). Identical requests share one job and gain watchers; a session's cancel only
detaches it while others still watch. Jobs submitted with `heartbeat=True` (pages) are dropped
when their watchers stop calling `touch` for `abandon_after_s` (a closed tab); a rerun or a page
switch within that time reattaches through `jobs(session=...)`.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from PIL import Image

from core.engines.base import Preview
from core.errors import BusyError, CancelledError, EngineError, OutOfMemoryError, StudioError
from core.runner import Prepared, Request, Result, Studio

log = logging.getLogger(__name__)

OUT_OF_MEMORY_MESSAGE = "ran out of memory: lower the size, steps or number of images"
UNEXPECTED_MESSAGE = "the job failed unexpectedly; the details are in the server log"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobStatus:
    """An immutable snapshot of one job, for the pages and the API."""

    id: str
    state: JobState
    position: int  # 1.. = place among queued jobs (1 = next); 0 when running or finished
    step: int
    total: int
    elapsed_s: float  # time spent running (0 while queued)
    eta_s: float | None  # seconds until this job finishes, the wait included; None = no estimate yet
    error: str | None  # one line a user can act on, when FAILED
    error_code: str | None  # the core.errors code, when FAILED
    cached: bool  # the result came from the result store; nothing ran
    label: str
    group: str | None
    key: str
    model: str
    cancel_requested: bool = False  # a running job stops at its next step
    step_s: float | None = None  # this job's measured seconds per step, once it has done one


class JobNotDoneError(StudioError):
    """`result()` of a job that is not DONE (the API answers 409); `status` says where it is."""

    code = "job_not_done"

    def __init__(self, status: JobStatus):
        super().__init__(_not_done_message(status))
        self.status = status


def _not_done_message(status: JobStatus) -> str:
    if status.state is JobState.QUEUED:
        return f"the job is still waiting (position {status.position} in the queue)"
    if status.state is JobState.RUNNING:
        return f"the job is still running (step {status.step} of {status.total})"
    if status.state is JobState.FAILED:
        return f"the job failed: {status.error}"
    return "the job was cancelled; it has no result"


@dataclass
class _Watch:
    heartbeat: bool  # False: never abandoned (API, CLI, batch)
    last_seen: float


@dataclass(eq=False)
class _Job:
    """Mutable job record; every field is guarded by the queue's lock."""

    id: str
    key: str
    model: str
    prepared: Prepared | None  # dropped when the job finishes: it holds the input image and mask
    label: str
    groups: list[str]  # the first is the one shown; a shared job can belong to several batches
    watchers: dict[str, _Watch]
    state: JobState = JobState.QUEUED
    step: int = 0
    total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result: Result | None = None
    error: str | None = None
    error_code: str | None = None
    cancel_requested: bool = False
    first_report: tuple[int, float] | None = None  # (step, time) of the engine's first report
    last_report: tuple[int, float] | None = None
    preview_source: tuple[int, Preview] | None = None  # the engine's latest renderer and its step
    preview_rendered: tuple[int, Image.Image] | None = None
    render_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def result_bytes(self) -> int:
        """Memory the finished result holds (its pixels; PNGs are encoded only when asked for)."""
        if self.result is None:
            return 0
        return sum(image.width * image.height * len(image.getbands()) for image in self.result.images)


@dataclass(frozen=True)
class _Cost:
    """Measured cost of one kind of job: seconds per step, and the fixed parts around the step loop."""

    per_step: float
    head: float  # from the start of the run to the engine's first report (model load, preprocessing)
    tail: float  # from the last report to the result (decode, paste back, encode, store)

    def seconds(self, steps: int) -> float:
        return self.head + steps * self.per_step + self.tail


class _StepTimes:
    """Exponential moving averages of measured costs per (model, task, work pixels).

    A size never measured is scaled from the same model's nearest measured size by pixel ratio
    (step time grows about linearly with pixels on these models); an unmeasured model has no
    estimate, and the pages say "estimating…".
    """

    SMOOTHING = 0.3  # weight of the newest sample: follows a warming cache or a busy machine quickly

    def __init__(self) -> None:
        self._costs: dict[tuple[str, str, int], _Cost] = {}

    def record(self, prepared: Prepared, per_step: float, head: float | None, tail: float | None) -> None:
        where = _cost_key(prepared)
        old = self._costs.get(where)
        if old is None:
            self._costs[where] = _Cost(per_step, head or 0.0, tail or 0.0)
            return
        self._costs[where] = _Cost(
            _smooth(old.per_step, per_step, self.SMOOTHING),
            old.head if head is None else _smooth(old.head, head, self.SMOOTHING),
            old.tail if tail is None else _smooth(old.tail, tail, self.SMOOTHING),
        )

    def cost(self, prepared: Prepared) -> _Cost | None:
        model, task, pixels = _cost_key(prepared)
        exact = self._costs.get((model, task, pixels))
        if exact is not None:
            return exact
        same_model = [(key, cost) for key, cost in self._costs.items() if key[0] == model]
        if not same_model:
            return None
        # Same task first, then the nearest size on a log scale.
        (_, _, measured_pixels), cost = min(
            same_model, key=lambda item: (item[0][1] != task, abs(math.log(item[0][2] / pixels)))
        )
        scale = pixels / measured_pixels
        return _Cost(cost.per_step * scale, cost.head, cost.tail * scale)


def _cost_key(prepared: Prepared) -> tuple[str, str, int]:
    return prepared.spec.id, prepared.request.task, max(1, prepared.work_pixels)


def _smooth(old: float, new: float, weight: float) -> float:
    return (1 - weight) * old + weight * new


class JobQueue:
    """The queue over one `Studio`. Thread-safe; every method but `wait` answers at once."""

    def __init__(
        self,
        studio: Studio,
        *,
        max_queue: int = 32,
        max_per_session: int = 4,
        abandon_after_s: float = 60.0,
        keep_finished: int = 500,
        keep_result_bytes: int = 512 * 1024 * 1024,
    ):
        if max_queue < 1 or max_per_session < 1 or keep_finished < 1:
            raise ValueError("max_queue, max_per_session and keep_finished must be at least 1")
        if abandon_after_s <= 0:
            raise ValueError("abandon_after_s must be positive")
        self.studio = studio
        self.max_queue = max_queue
        self.max_per_session = max_per_session
        self.abandon_after_s = abandon_after_s
        self.keep_finished = keep_finished
        self.keep_result_bytes = keep_result_bytes  # finished results held in memory; oldest dropped first
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a job was queued, started or finished
        self._jobs: dict[str, _Job] = {}  # every retained job, in submission order
        self._queued: deque[_Job] = deque()
        self._running: _Job | None = None
        self._unfinished_by_key: dict[str, _Job] = {}  # what identical requests join
        self._finished: deque[_Job] = deque()  # oldest first, for dropping
        self._finished_bytes = 0
        self._times = _StepTimes()
        self._worker: threading.Thread | None = None
        self._closing = False

    # -- submitting ---------------------------------------------------------------------------

    def submit(
        self,
        request: Request,
        *,
        session: str,
        label: str = "",
        group: str | None = None,
        heartbeat: bool = False,
        allow_local_path: bool = False,
    ) -> str:
        """Queue a request and return its job id; never waits for the queue.

        Bad input raises its StudioError here and queues nothing. A result already in the store
        gives a job that is DONE at once (cached=True). An identical request queued or running
        is shared (its id is returned). Beyond `max_queue` waiting jobs, or `max_per_session`
        unfinished jobs of this session, raises BusyError.
        """
        prepared = self.studio.prepare(request, allow_local_path=allow_local_path)
        hit = self.studio.cached(prepared)  # disk I/O: outside the lock
        now = time.monotonic()
        with self._lock:
            if self._closing:
                raise BusyError("the studio is shutting down; try again in a minute")
            self._drop_abandoned(now)
            if hit is not None:
                job = self._new_job(prepared, session, label, group, heartbeat, now)
                job.step = job.total
                self._finish(job, JobState.DONE, now, result=hit)
                return job.id
            shared = self._unfinished_by_key.get(prepared.key)
            if shared is not None:
                self._watch(shared, session, heartbeat, now)
                if group is not None and group not in shared.groups:
                    shared.groups.append(group)
                return shared.id
            self._check_limits(session)
            job = self._new_job(prepared, session, label, group, heartbeat, now)
            self._queued.append(job)
            self._unfinished_by_key[prepared.key] = job
            self._start_worker()
            self._changed.notify_all()
            return job.id

    def _new_job(self, prepared: Prepared, session: str, label: str, group: str | None, heartbeat: bool, now: float) -> _Job:
        job = _Job(
            id=secrets.token_hex(8),
            key=prepared.key,
            model=prepared.spec.id,
            prepared=prepared,
            label=label,
            groups=[group] if group is not None else [],
            watchers={session: _Watch(heartbeat, now)},
            total=prepared.total_steps,
        )
        self._jobs[job.id] = job
        return job

    @staticmethod
    def _watch(job: _Job, session: str, heartbeat: bool, now: float) -> None:
        watch = job.watchers.get(session)
        if watch is None:
            job.watchers[session] = _Watch(heartbeat, now)
        else:  # a watcher that needs no heartbeat keeps needing none
            watch.heartbeat = watch.heartbeat and heartbeat
            watch.last_seen = now

    def _check_limits(self, session: str) -> None:
        if len(self._queued) >= self.max_queue:
            raise BusyError(f"the studio is busy: {len(self._queued)} jobs are waiting; try again in a minute")
        mine = sum(1 for job in self._unfinished() if session in job.watchers)
        if mine >= self.max_per_session:
            raise BusyError(
                f"you already have {mine} jobs waiting or running; wait for one to finish or cancel one"
            )

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="studio-queue-worker", daemon=True)
            self._worker.start()

    # -- looking --------------------------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        """Unknown (or long-finished and dropped) ids raise KeyError."""
        now = time.monotonic()
        with self._lock:
            self._drop_abandoned(now)
            return self._status(self._get(job_id), now)

    def jobs(self, *, session: str | None = None, group: str | None = None) -> list[JobStatus]:
        """Retained jobs in submission order, optionally only those a session watches or of a group
        (how a page reattaches to its jobs after a rerun)."""
        now = time.monotonic()
        with self._lock:
            self._drop_abandoned(now)
            queued = self._queue_snapshots(now)
            return [
                queued.get(job.id) or self._snapshot(job, now, 0, self._remaining(job, now))
                for job in self._jobs.values()
                if (session is None or session in job.watchers) and (group is None or group in job.groups)
            ]

    def result(self, job_id: str) -> Result:
        """The result of a DONE job; otherwise raises JobNotDoneError (its `status` tells why)."""
        with self._lock:
            job = self._get(job_id)
            if job.state is JobState.DONE:
                return job.result
            snapshot = self._status(job, time.monotonic())
        raise JobNotDoneError(snapshot)

    def preview(self, job_id: str) -> Image.Image | None:
        """The latest live preview of a running job, or None (no preview yet, OpenCV, not running).

        Rendered here, in the caller's thread, from the renderer the engine passed to its last
        report, and at most once per step however many pages look. The renderer must only read
        what it captured at that step (the latents), never the live pipeline. Treat the image as
        read-only: it is shared.
        """
        with self._lock:
            job = self._get(job_id)
            if job.state is not JobState.RUNNING or job.preview_source is None:
                return None
            step, render = job.preview_source
            if job.preview_rendered is not None and job.preview_rendered[0] >= step:
                return job.preview_rendered[1]
        with job.render_lock:  # a second page asking for the same step waits for the first render
            with self._lock:
                if job.preview_rendered is not None and job.preview_rendered[0] >= step:
                    return job.preview_rendered[1]
            try:
                image = render()
            except Exception:  # a preview must never break the page or the run
                log.exception("rendering a preview of job %s failed", job_id)
                return None
            with self._lock:
                if job.state is JobState.RUNNING:
                    job.preview_rendered = (step, image)
            return image

    def queue_length(self) -> int:
        """Jobs waiting to start (the running one not counted)."""
        with self._lock:
            return len(self._queued)

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job finishes or `timeout` seconds pass; returns its status either way."""
        with self._lock:
            job = self._get(job_id)
            self._changed.wait_for(lambda: job.state.finished, timeout)
            return self._status(job, time.monotonic())

    # -- watching and cancelling ------------------------------------------------------------------

    def touch(self, job_id: str, session: str) -> None:
        """A page still watches the job. A session that detached (cancel) stays detached."""
        now = time.monotonic()
        with self._lock:
            job = self._get(job_id)
            watch = job.watchers.get(session)
            if watch is not None:
                watch.last_seen = now
            self._drop_abandoned(now)

    def cancel(self, job_id: str, *, session: str | None = None) -> JobStatus:
        """Cancel a job: a queued one at once, a running one at its next step.

        With a session: that session stops watching, and the job is cancelled only when no other
        session watches it (the returned status then shows it going on for them). Without one
        (the API's DELETE, the CLI, shutdown): cancelled outright. Finished jobs are left as they
        are. A run that finishes before reaching its next step stays DONE: its result is stored.
        """
        now = time.monotonic()
        with self._lock:
            job = self._get(job_id)
            self._cancel(job, session, now)
            return self._status(job, now)

    def cancel_group(self, group: str, *, session: str | None = None) -> int:
        """Cancel (or, with a session, detach from) the unfinished jobs of a batch; finished ones
        stay available. Returns how many jobs this stopped or detached from."""
        now = time.monotonic()
        with self._lock:
            members = [job for job in self._unfinished() if group in job.groups]
            return sum(self._cancel(job, session, now) for job in members)

    def _cancel(self, job: _Job, session: str | None, now: float) -> bool:
        if job.state.finished or job.cancel_requested:
            return False
        if session is not None:
            if job.watchers.pop(session, None) is None:
                return False  # not this session's job
            if job.watchers:
                return True
        self._stop(job, now)
        return True

    def _stop(self, job: _Job, now: float) -> None:
        if self._unfinished_by_key.get(job.key) is job:
            del self._unfinished_by_key[job.key]  # a new identical request must not join a dying job
        if job.state is JobState.QUEUED:
            self._queued.remove(job)
            self._finish(job, JobState.CANCELLED, now)
        else:
            job.cancel_requested = True  # the reporter raises CancelledError at the next step

    def _drop_abandoned(self, now: float) -> None:
        """Detach heartbeat watchers that went quiet; a job nobody watches any more is cancelled."""
        deadline = now - self.abandon_after_s
        for job in self._unfinished():
            if job.cancel_requested:
                continue
            gone = [name for name, watch in job.watchers.items() if watch.heartbeat and watch.last_seen < deadline]
            for name in gone:
                del job.watchers[name]
            if gone and not job.watchers:
                log.info("job %s abandoned by its watchers; cancelling it", job.id)
                self._stop(job, now)

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new jobs, cancel the queued ones and stop the running one at its next step."""
        now = time.monotonic()
        with self._lock:
            self._closing = True
            for job in list(self._unfinished()):
                self._stop(job, now)
            self._changed.notify_all()
            worker = self._worker
        if wait and worker is not None and worker is not threading.current_thread():
            worker.join()

    # -- the worker -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            self._run(job)

    def _next_job(self) -> _Job | None:
        with self._lock:
            while not self._queued:
                if self._closing:
                    return None
                # Wake now and then to drop abandoned jobs even when nothing else happens.
                self._changed.wait(timeout=min(1.0, self.abandon_after_s / 4))
                self._drop_abandoned(time.monotonic())
            job = self._queued.popleft()
            job.state = JobState.RUNNING
            job.started_at = time.monotonic()
            self._running = job
            self._changed.notify_all()
            return job

    def _run(self, job: _Job) -> None:
        result = None
        state, message, code = JobState.DONE, None, None
        try:
            result = self.studio.run(job.prepared, self._reporter(job))
        except CancelledError:
            state = JobState.CANCELLED
        except Exception as error:  # the worker outlives every job
            state = JobState.FAILED
            if _is_out_of_memory(error):
                message, code = OUT_OF_MEMORY_MESSAGE, OutOfMemoryError.code
            elif isinstance(error, StudioError):
                message, code = error.message, error.code
            else:
                log.exception("job %s (%s) failed", job.id, job.model)
                message, code = UNEXPECTED_MESSAGE, EngineError.code
        with self._lock:
            now = time.monotonic()
            if state is JobState.DONE and not result.cached:
                self._measure(job, now)
            elif state is JobState.CANCELLED:
                self._measure(job, now, steps_only=True)
            self._running = None
            if self._unfinished_by_key.get(job.key) is job:
                del self._unfinished_by_key[job.key]
            self._finish(job, state, now, result=result, error=message, code=code)

    def _reporter(self, job: _Job):
        def report(step: int, total: int, preview: Preview | None = None) -> None:
            now = time.monotonic()
            with self._lock:
                job.step, job.total = step, total
                if job.first_report is None:
                    job.first_report = (step, now)
                job.last_report = (step, now)
                if preview is not None:
                    job.preview_source = (step, preview)
                self._drop_abandoned(now)
                if job.cancel_requested:
                    raise CancelledError("the job was cancelled")

        return report

    def _measure(self, job: _Job, now: float, *, steps_only: bool = False) -> None:
        per_step = _own_step_seconds(job)
        if per_step is None:
            return
        (first_step, first_time), (_, last_time) = job.first_report, job.last_report
        # Steps before the first report (usually none, or step 0 itself) count as head time.
        head = None if steps_only else max(0.0, first_time - job.started_at - first_step * per_step)
        tail = None if steps_only else max(0.0, now - last_time)
        self._times.record(job.prepared, per_step, head, tail)

    def _finish(
        self,
        job: _Job,
        state: JobState,
        now: float,
        *,
        result: Result | None = None,
        error: str | None = None,
        code: str | None = None,
    ) -> None:
        job.state = state
        job.finished_at = now
        job.result = result
        job.error, job.error_code = error, code
        job.prepared = None
        job.preview_source = job.preview_rendered = None  # frees the latents; nothing of a cancelled run is shown
        self._finished.append(job)
        self._finished_bytes += job.result_bytes
        while len(self._finished) > self.keep_finished or (
            self._finished_bytes > self.keep_result_bytes and len(self._finished) > 1
        ):
            dropped = self._finished.popleft()
            self._finished_bytes -= dropped.result_bytes
            self._jobs.pop(dropped.id, None)
        self._changed.notify_all()

    # -- snapshots and estimates --------------------------------------------------------------------

    def _get(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def _unfinished(self) -> list[_Job]:
        return ([self._running] if self._running is not None else []) + list(self._queued)

    def _status(self, job: _Job, now: float) -> JobStatus:
        if job.state is JobState.QUEUED:
            return self._queue_snapshots(now)[job.id]
        return self._snapshot(job, now, 0, self._remaining(job, now))

    def _queue_snapshots(self, now: float) -> dict[str, JobStatus]:
        """Every queued job with its position (1..n, no gaps) and an ETA that adds up the work ahead."""
        ahead = self._remaining(self._running, now) if self._running is not None else 0.0
        snapshots = {}
        for position, job in enumerate(self._queued, start=1):
            cost = self._times.cost(job.prepared)
            own = cost.seconds(job.prepared.total_steps) if cost is not None else None
            ahead = None if ahead is None or own is None else ahead + own
            snapshots[job.id] = self._snapshot(job, now, position, ahead)
        return snapshots

    def _remaining(self, job: _Job, now: float) -> float | None:
        """Seconds until a running job finishes: its own measured step rate once it has one."""
        if job.state.finished:
            return 0.0
        cost = self._times.cost(job.prepared)
        total = job.total or job.prepared.total_steps
        if job.state is JobState.QUEUED:
            return cost.seconds(total) if cost is not None else None
        rate = _own_step_seconds(job)
        if rate is None and cost is not None:
            rate = cost.per_step
        if rate is None:
            return None
        tail = cost.tail if cost is not None else 0.0
        if job.last_report is None:  # still loading the model or preparing the images
            head = cost.head if cost is not None else 0.0
            return max(0.0, head - (now - job.started_at)) + total * rate + tail
        step, at = job.last_report
        return max(0.0, (total - step) * rate + tail - (now - at))

    @staticmethod
    def _snapshot(job: _Job, now: float, position: int, eta: float | None) -> JobStatus:
        if job.started_at is None:
            elapsed = 0.0
        else:
            elapsed = (job.finished_at if job.finished_at is not None else now) - job.started_at
        return JobStatus(
            id=job.id,
            state=job.state,
            position=position,
            step=job.step,
            total=job.total,
            elapsed_s=elapsed,
            eta_s=eta,
            error=job.error,
            error_code=job.error_code,
            cached=job.result.cached if job.result is not None else False,
            label=job.label,
            group=job.groups[0] if job.groups else None,
            key=job.key,
            model=job.model,
            cancel_requested=job.cancel_requested,
            step_s=_own_step_seconds(job),
        )


def _own_step_seconds(job: _Job) -> float | None:
    if job.first_report is None or job.last_report is None or job.last_report[0] <= job.first_report[0]:
        return None
    (first_step, first_time), (last_step, last_time) = job.first_report, job.last_report
    return (last_time - first_time) / (last_step - first_step)


def _is_out_of_memory(error: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError, or a StudioError wrapping either (the runner wraps
    unexpected engine errors in EngineError)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, (MemoryError, OutOfMemoryError)) or type(error).__name__ == "OutOfMemoryError":
            return True
        error, seen = error.__cause__, seen + 1
    return False


__all__ = ["JobNotDoneError", "JobQueue", "JobState", "JobStatus", "OUT_OF_MEMORY_MESSAGE"]
