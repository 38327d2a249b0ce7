"""The job record: what the job store keeps about one job, and the snapshot pages and the API see.

A `JobRecord` is plain data (JSON in the store), so every front-end and worker process reads the
same job. Times are wall-clock seconds (`time.time()`): several processes, possibly on several
machines, compare them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from core.errors import StudioError

WORKER_LOST_MESSAGE = "the worker stopped twice while running this job"
MAX_ATTEMPTS = 2  # a job whose worker died is retried once, then failed: no crash loops


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass
class Watch:
    """A session waiting for a job. `heartbeat`: dropped when its browser session has been gone
    for the operator's window; False (API clients, batch and compare groups): never dropped."""

    heartbeat: bool
    last_seen: float


@dataclass
class ResultInfo:
    """Where a finished job's result is: the result store's key, the drawn seed and the sizes."""

    key: str
    seed: int
    sizes: list[tuple[int, int]]
    stored: bool  # False: the result store did not keep it (flagged images, a full or unwritable store)


@dataclass
class JobRecord:
    id: str
    seq: int  # submission order, shared by every process
    key: str  # the request's content key: identical requests share one job
    model: str
    task: str
    label: str
    owner: str  # the session that submitted it first: the unit of round-robin fairness
    groups: list[str]  # the first is the one shown; a shared job can belong to several batches
    watchers: dict[str, Watch]
    total_steps: int
    work_pixels: int
    created_at: float
    state: JobState = JobState.QUEUED
    attempts: int = 0
    worker: str | None = None  # "host:pid" of the worker that ran (or runs) it
    lease_until: float | None = None  # a running job whose lease passes was lost with its worker
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_code: str | None = None
    cancel_requested: bool = False
    cached: bool = False
    result: ResultInfo | None = None

    def to_json(self) -> str:
        # asdict's shape, without its deep copy (this runs in every store transaction)
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["watchers"] = {name: vars(watch) for name, watch in self.watchers.items()}
        if self.result is not None:
            data["result"] = vars(self.result)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> JobRecord:
        data: dict[str, Any] = json.loads(text)
        data["state"] = JobState(data["state"])
        data["watchers"] = {name: Watch(**watch) for name, watch in data["watchers"].items()}
        if data.get("result") is not None:
            info = data["result"]
            data["result"] = ResultInfo(
                info["key"], info["seed"], [tuple(size) for size in info["sizes"]], info["stored"]
            )
        return cls(**data)


_RECORD_FIELDS = tuple(item.name for item in fields(JobRecord))


@dataclass
class Progress:
    """A running job's progress, written by its worker at every step."""

    step: int = 0
    total: int = 0
    first_report: tuple[int, float] | None = None  # (step, time) of the engine's first report
    last_report: tuple[int, float] | None = None
    preview_step: int | None = None  # the step of the latest preview JPEG, if any

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Progress:
        if not text:
            return cls()
        data = json.loads(text)
        for name in ("first_report", "last_report"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)

    def step_seconds(self) -> float | None:
        """Measured seconds per step between the first and the latest report."""
        if self.first_report is None or self.last_report is None or self.last_report[0] <= self.first_report[0]:
            return None
        (first_step, first_time), (last_step, last_time) = self.first_report, self.last_report
        return (last_time - first_time) / (last_step - first_step)


@dataclass(frozen=True)
class JobStatus:
    """An immutable snapshot of one job, for the pages, the API and the operator's listing."""

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
    worker: str | None = None
    attempts: int = 0
    age_s: float = 0.0  # since it was submitted
    seed: int | None = None  # the drawn seed, once done
    groups: tuple[str, ...] = field(default=())


class UnknownJobError(StudioError):
    """No job has this id (never submitted, or dropped from the store long after it finished)."""

    code = "unknown_job"

    def __init__(self, job_id: str):
        super().__init__("unknown job; finished jobs are kept for a while, then dropped")
        self.job_id = job_id


class ResultGoneError(StudioError):
    """The job finished, but its result is no longer kept (the result store evicted it)."""

    code = "result_gone"


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
