"""The job store: one interface, two backends (SQLite in the state folder, Redis for several
machines), picked by `STUDIO_QUEUE_URL`.

A store keeps job records, their inputs (the payload a worker needs to run the job), the running
jobs' progress and latest preview, measured costs for ETAs, and which workers are alive. Every
change to job records goes through `transact(fn)`: `fn` sees the unfinished jobs and changes
them, and the store commits all of it atomically (SQLite: one IMMEDIATE transaction; Redis: a Lua
compare-and-set on a version key, so `fn` may run again after a conflict and must not have side
effects). The rules `fn` applies live in `core.jobs.policy`, written once for both backends. A
commit that changes something wakes the waiters (and, when it queues a job, idle workers) in every
process.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from core.jobs.eta import Cost
from core.jobs.payload import EncodedRequest
from core.jobs.record import JobRecord, JobState, Progress

T = TypeVar("T")

DEFAULT_KEEP_FINISHED = 10_000  # finished job records (small); their inputs are bounded by bytes
DEFAULT_KEEP_PAYLOAD_BYTES = 1024 * 1024 * 1024


class Transaction:
    """What `fn` of `JobStore.transact` works on. `unfinished` holds the queued and running jobs in
    submission order; `put` a changed (or new) record; `served` is the fairness state."""

    def __init__(
        self,
        unfinished: Iterable[JobRecord],
        served: dict[str, int],
        lookup: Callable[[str], JobRecord | None],
        new_seq: Callable[[], int],
    ):
        self.unfinished = sorted(unfinished, key=lambda record: record.seq)
        self.served = dict(served)
        self.served_before = dict(served)
        self.changed: dict[str, JobRecord] = {}
        self.progress_dropped: set[str] = set()  # running jobs' progress and preview, removed with the commit
        self.payloads: dict[str, EncodedRequest] = {}  # new jobs' inputs, stored with the commit
        self.woken: str | None = None  # the idle worker the commit wakes (a job was handed to it)
        self._lookup = lookup
        self._new_seq = new_seq
        self._by_id = {record.id: record for record in self.unfinished}
        self._queued_before = {record.id for record in self.unfinished if record.state is JobState.QUEUED}

    def get(self, job_id: str) -> JobRecord | None:
        record = self.changed.get(job_id) or self._by_id.get(job_id)
        if record is None:
            record = self._lookup(job_id)
            if record is not None:
                self._by_id[job_id] = record
        return record

    def put(self, record: JobRecord, payload: EncodedRequest | None = None) -> None:
        """`payload`: a new job's inputs, committed with it (no worker sees the job without them)."""
        self.changed[record.id] = record
        if payload is not None:
            self.payloads[record.id] = payload
        if record.id not in self._by_id and not record.state.finished:
            self.unfinished.append(record)
        self._by_id[record.id] = record

    def wake(self, worker: str) -> None:
        """Wake this idle worker when the transaction commits."""
        self.woken = worker

    def new_seq(self) -> int:
        return self._new_seq()

    def drop_progress(self, job_id: str) -> None:
        self.progress_dropped.add(job_id)

    def queues_work(self) -> bool:
        """Whether this transaction queues a job that was not queued before (idle workers wake)."""
        return any(
            record.state is JobState.QUEUED and job_id not in self._queued_before
            for job_id, record in self.changed.items()
        )


class JobStore(ABC):
    kind: str  # "sqlite" or "redis", for /health and the operator
    # True: `transact` runs on a snapshot and commits by compare-and-set, so one that changes
    # nothing costs a read and takes no lock (idle workers need no cheaper look first).
    optimistic = False

    def __init__(self) -> None:
        self._changed = threading.Condition()  # a job changed state in this process (or, on Redis, anywhere)
        self._generation = 0  # counts those changes: a waiter never misses one that came before it waited

    # -- records ---------------------------------------------------------------------------------

    @abstractmethod
    def transact(self, fn: Callable[[Transaction], T]) -> T: ...

    @abstractmethod
    def get(self, job_id: str) -> JobRecord | None: ...

    @abstractmethod
    def unfinished(self) -> list[JobRecord]:
        """Queued and running jobs, in submission order (a consistent snapshot, no lock held)."""

    @abstractmethod
    def served(self) -> dict[str, int]:
        """The fairness state (owner -> turn of its last claim), as the last transaction left it."""

    @abstractmethod
    def find(self, *, session: str | None = None, group: str | None = None) -> list[JobRecord]:
        """Jobs a session watched or a group holds, in submission order (one of the two is given)."""

    @abstractmethod
    def recent(self, limit: int) -> list[JobRecord]:
        """The most recently submitted finished jobs, newest first."""

    # -- payloads, progress, previews ---------------------------------------------------------------

    @abstractmethod
    def put_payload(self, job_id: str, data: EncodedRequest) -> None: ...

    @abstractmethod
    def payload(self, job_id: str) -> bytes | None: ...

    @abstractmethod
    def drop_payload(self, job_id: str) -> None: ...

    @abstractmethod
    def keep_result(self, job_id: str, data: bytes) -> None:
        """A finished job's result the result store did not keep (a flagged image, a full or
        unwritable store), so any front-end can still serve it by id; bounded with the inputs."""

    @abstractmethod
    def kept_result(self, job_id: str) -> bytes | None: ...

    @abstractmethod
    def set_progress(
        self, job_id: str, progress: Progress, preview: bytes | None = None, *, publish: bool = False
    ) -> JobRecord | None:
        """Write the latest progress of a running job, and its latest preview JPEG when given (latest
        only); `publish`: also announce it to live listeners. Returns the job's record as it is now
        (its worker checks for a cancel or a lost lease with the same round trip)."""

    @abstractmethod
    def progress(self, job_id: str) -> Progress: ...

    @abstractmethod
    def preview(self, job_id: str) -> tuple[int, bytes] | None:
        """(step, JPEG) of the latest preview of a job."""

    @abstractmethod
    def drop_progress(self, job_id: str) -> None: ...

    # -- costs and workers -------------------------------------------------------------------------

    @abstractmethod
    def costs(self) -> dict[str, Cost]: ...

    @abstractmethod
    def record_cost(self, key: str, sample: Cost) -> None: ...

    @abstractmethod
    def beat(self, worker: str, now: float) -> None:
        """A worker is alive at `now`."""

    @abstractmethod
    def forget_worker(self, worker: str) -> None: ...

    @abstractmethod
    def workers(self) -> dict[str, float]:
        """Every worker that has beaten, and when it last did."""

    # -- waking ------------------------------------------------------------------------------------

    @abstractmethod
    def notify(self) -> None:
        """Wake workers (a job was queued) and waiters (a job changed state), in every process."""

    @abstractmethod
    def wait_for_work(self, timeout: float, since: int | None = None, *, worker: str = "") -> None:
        """Block until a job may be waiting (something changed after `generation()` was `since`), a
        commit woke this `worker` (`Transaction.wake`), or `timeout` passes."""

    def generation(self) -> int:
        """Read before looking at the store; pass to the waits, so a change in between is not missed."""
        with self._changed:
            return self._generation

    def listen(self) -> None:  # noqa: B027 (optional)
        """Start hearing of other processes' changes, where the store can tell (waits do; idempotent)."""

    @abstractmethod
    def news(self) -> object | None:
        """A token that differs after any committed change of any job in any process, or None when the
        store cannot tell now (a running job's worker compares them to skip looking at the store)."""

    def wait_for_change(self, timeout: float, since: int | None = None) -> None:
        """Block until a job may have changed state, or `timeout` passes (callers re-check)."""
        self._wait(min(timeout, self.poll_s), since)

    def _wait(self, timeout: float, since: int | None) -> None:
        with self._changed:
            if since is None:
                self._changed.wait(timeout=timeout)
            else:
                self._changed.wait_for(lambda: self._generation != since, timeout=timeout)

    poll_s = 0.05  # how often waiters re-read the store when nothing tells them

    def _signal(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    # -- retention ---------------------------------------------------------------------------------

    @abstractmethod
    def prune(self, *, keep_finished: int, keep_payload_bytes: int) -> None:
        """Drop the inputs and kept results of the oldest finished jobs beyond `keep_payload_bytes`,
        and the oldest finished records beyond `keep_finished`."""

    @abstractmethod
    def payload_bytes(self) -> int:
        """Bytes of job inputs and kept results held (what retention counts)."""

    def close(self) -> None:  # noqa: B027 (optional)
        pass


def open_store(url: str | None, cache_dir: Path) -> JobStore:
    """`STUDIO_QUEUE_URL`: unset = SQLite in the state folder; `sqlite:///path`; `redis://host:port/db`.
    Job inputs go to `cache_dir`'s job-inputs folder on every store (`core.jobs.inputs`)."""
    from core.jobs.inputs import FOLDER

    inputs = Path(cache_dir) / FOLDER
    if not url:
        from core.jobs.sqlite_store import SqliteStore

        return SqliteStore(Path(cache_dir) / "jobs.sqlite3", inputs)
    if url.startswith("sqlite:///"):
        from core.jobs.sqlite_store import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite:///")).expanduser(), inputs)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from core.jobs.redis_store import RedisStore

        return RedisStore(url, inputs)
    raise ValueError(
        "STUDIO_QUEUE_URL must be redis://host:port/db or sqlite:///path (unset: SQLite in STUDIO_CACHE_DIR)"
    )
