"""The job queue the app's inferences go through (pages, batch runner, API), over a job store.
(The CLI's generate, inpaint and batch run a `Studio` of their own, without it; `python -m core worker`
and `python -m core queue` work on this queue's store.)

Front-end side: `submit` validates a request, stores its inputs and queues it (or shares an
identical unfinished job, or answers a stored result at once); `status`, `jobs`, `preview`,
`wait`, `result`, `cancel` read and change jobs in the store, so any front-end sees any job,
whichever process or machine submitted or runs it. Worker side: `workers` threads of this
process (`core.jobs.worker`) take jobs from the store; other processes may run more.

Sessions: every submit names the session that watches the job (a browser session, an API client,
a batch or compare group). Identical requests share one job and gain watchers; a session's cancel only detaches it
while others still watch. Browser sessions watch with a heartbeat (`touch_sessions`, sent by the
front-end while the session's websocket is open); a job whose last watcher went quiet for
`abandon_after_s` is cancelled. API, batch and compare jobs never are.
"""

from __future__ import annotations

import io
import logging
import secrets
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from core import settings
from core.clients import client_load
from core.errors import BusyError
from core.jobs import eta, policy
from core.jobs.payload import EncodedRequest, decode_result, output_sizes, request_image
from core.jobs.record import (
    JobNotDoneError,
    JobRecord,
    JobState,
    JobStatus,
    Progress,
    ResultGoneError,
    ResultInfo,
    UnknownJobError,
    Watch,
)
from core.jobs.sqlite_store import SqliteStore
from core.jobs.store import DEFAULT_KEEP_FINISHED, DEFAULT_KEEP_PAYLOAD_BYTES, JobStore
from core.jobs.worker import Worker, worker_name
from core.runner import Prepared, Request, Result, Studio

log = logging.getLogger(__name__)

_ESTIMATE_TTL_S = 1.0
_UNREAD_KEEP_S = 60.0  # costs and live workers are re-read at most this often per front-end


class _Context:
    """What positions and ETAs of queued jobs need, read once per call."""

    def __init__(self, queue: JobQueue, now: float):
        store = queue.store
        self.now = now
        unfinished = store.unfinished()
        order = policy.claim_order([r for r in unfinished if r.state is JobState.QUEUED], store.served())
        self.position = {record.id: index for index, record in enumerate(order, start=1)}
        running = [(record, store.progress(record.id)) for record in unfinished if record.state is JobState.RUNNING]
        self.progress = {record.id: progress for record, progress in running}
        self.etas = eta.finish_times(order, running, queue._costs(), queue.workers_alive(), now)


class JobQueue:
    """Thread-safe; every method but `wait` answers at once."""

    def __init__(
        self,
        studio: Studio,
        store: JobStore | None = None,
        *,
        workers: int = settings.default("workers"),
        max_queue: int = settings.default("max_queue"),
        max_per_session: int = settings.default("max_jobs_per_session"),
        abandon_after_s: float = settings.default("abandon_after_s"),
        lease_s: float = settings.default("lease_s"),
        keep_finished: int = DEFAULT_KEEP_FINISHED,
        keep_payload_bytes: int = DEFAULT_KEEP_PAYLOAD_BYTES,
        keep_result_bytes: int = 256 * 1024 * 1024,
    ):
        if max_queue < 1 or max_per_session < 1 or keep_finished < 1 or workers < 0:
            raise ValueError("max_queue, max_per_session and keep_finished must be at least 1, workers at least 0")
        if abandon_after_s <= 0 or lease_s <= 0:
            raise ValueError("abandon_after_s and lease_s must be positive")
        self.studio = studio
        # No store given: a private one, like an in-memory queue (tests, one-off tools).
        self.store = (
            store if store is not None else SqliteStore(Path(tempfile.mkdtemp(prefix="studio-jobs-")) / "jobs.sqlite3")
        )
        self.max_queue = max_queue
        self.max_per_session = max_per_session
        self.abandon_after_s = abandon_after_s
        self.lease_s = lease_s
        self.keep_finished = keep_finished
        self.keep_payload_bytes = keep_payload_bytes
        self.keep_result_bytes = keep_result_bytes  # finished results this process holds in memory, by real bytes
        self._lock = threading.Lock()
        self._prepared: dict[str, Prepared] = {}  # submitted here, not yet taken: local workers skip decoding
        self._held: OrderedDict[str, tuple[Result, int]] = OrderedDict()  # recent results made or served here
        self._waiting: Counter[str] = Counter()  # jobs a `wait` of this process waits for: their results stay held
        self._unread: dict[str, float] = {}  # finished while waited for, result not read yet: held until this time
        self._preview: tuple[str, int, Image.Image] | None = None
        self._estimates: tuple[float, dict] | None = None  # (when read, costs)
        self._finishes = 0
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-job-inputs")
        self._writing: dict[str, Future] = {}  # inputs of jobs handed to a worker here, being written
        self._handed_over = threading.Condition(self._lock)  # a reserved worker's hand-over was decided
        self._closing = False
        self._workers = [Worker(self, worker_name(index)) for index in range(workers)]
        self._threads = [
            threading.Thread(target=worker.run, name=f"studio-worker-{index + 1}", daemon=True)
            for index, worker in enumerate(self._workers)
        ]
        for worker in self._workers:  # alive from now on, for /health and the Home page
            self.store.beat(worker.name, time.time())
        for thread in self._threads:
            thread.start()

    # -- submitting ---------------------------------------------------------------------------

    def submit(
        self, request: Request, *, session: str, label: str = "", group: str | None = None, heartbeat: bool = False
    ) -> str:
        """Queue a request and return its job id; never waits for the queue.

        Bad input raises its StudioError here and queues nothing. A result already in the store
        gives a job that is DONE at once (cached=True). An identical request queued or running
        is shared (its id is returned). Beyond `max_queue` waiting jobs, or `max_per_session`
        unfinished jobs of this session, raises BusyError. Jobs of a group (batch, compare) are
        never abandoned, whatever `heartbeat` says.
        """
        if self._closing:
            raise BusyError("the studio is shutting down; try again in a minute")
        prepared = self.studio.prepare(request)
        hit = self.studio.cached(prepared)  # disk I/O and encoding: all before the store's transaction
        payload = EncodedRequest(prepared.request)  # written when a store writes it: nothing copied yet
        heartbeat = heartbeat and group is None
        job_id, now = secrets.token_hex(8), time.time()
        # An idle worker of this process takes the job in the submit's own commit when no other job
        # waits (so the order is fair): no claim round trip, and its inputs are written beside the run
        # instead of before it. A job queued, or handed to another process, has them written first.
        worker = self._reserve_idle_worker() if hit is None else None
        handed: list[JobRecord] = []

        def queue(txn) -> str:
            handed.clear()  # Redis may run this again on a fresh snapshot
            policy.drop_abandoned(txn, now, self.abandon_after_s)
            if hit is None:
                shared = policy.joinable(txn, prepared.key)
                if shared is not None:
                    policy.watch(shared, session, heartbeat, group, now)
                    txn.put(shared)
                    return shared.id
                policy.check_limits(txn, session, max_queue=self.max_queue, max_per_session=self.max_per_session)
            record = self._new_record(job_id, txn.new_seq(), prepared, session, label, group, heartbeat, now)
            if hit is not None:
                record.result = ResultInfo(hit.key, prepared.request.seed, output_sizes(prepared.request), True)
                record.cached = True
                policy.finish(txn, record, JobState.DONE, now)
            elif worker is not None and not any(other.state is JobState.QUEUED for other in txn.unfinished):
                txn.put(record)
                handed.append(policy.claim(txn, worker.name, now, self.lease_s))
                txn.wake(worker.name)
            else:
                txn.put(record, payload)
            return record.id

        if hit is None:
            with self._lock:  # before the commit: a worker of this process may take the job at once
                self._prepared[job_id] = prepared
        chosen = None
        try:
            chosen = self.store.transact(queue)
        finally:
            if chosen != job_id:  # refused, or shared with an identical job: nothing of ours was stored
                handed.clear()
                with self._lock:
                    self._prepared.pop(job_id, None)
            if handed:
                with self._lock:
                    self._writing[job_id] = self._background.submit(self._write_inputs, job_id, payload)
            if worker is not None:
                self._hand_over(worker, handed[0] if handed else None)
        if chosen != job_id:
            return chosen
        if hit is not None:
            self._hold(job_id, hit)
            if prepared.request.task == "inpaint":  # only to show the result elsewhere: written after
                self._background.submit(self._write_inputs, job_id, payload)
        return job_id

    def _write_inputs(self, job_id: str, payload: EncodedRequest) -> None:
        try:
            self.store.put_payload(job_id, payload)
        except Exception:  # this process has them; another reads them as lost ("submit it again")
            log.exception("could not store the inputs of job %s", job_id)

    def _reserve_idle_worker(self) -> Worker | None:
        """An idle worker of this process, reserved (it takes nothing else) until `_hand_over`."""
        with self._lock:
            for worker in self._workers:
                if worker.idle and not worker.reserved and not worker.stopping.is_set() and not self._closing:
                    worker.reserved = True
                    return worker
        return None

    def _hand_over(self, worker: Worker, record: JobRecord | None) -> None:
        with self._lock:
            worker.reserved, worker.handed = False, record
            if record is not None:  # it has work now, though it may not have woken yet: no second job for it
                worker.idle = False
            self._handed_over.notify_all()

    def _await_inputs(self, job_id: str) -> None:
        """Wait until the inputs of a job handed to a worker here are written (at once otherwise)."""
        with self._lock:
            writing = self._writing.pop(job_id, None)
        if writing is not None:
            writing.result()

    @staticmethod
    def _new_record(job_id, seq, prepared: Prepared, session, label, group, heartbeat, now) -> JobRecord:
        return JobRecord(
            id=job_id,
            seq=seq,
            key=prepared.key,
            model=prepared.spec.id,
            task=prepared.request.task,
            label=label,
            owner=session,
            groups=[group] if group is not None else [],
            watchers={session: Watch(heartbeat, now)},
            total_steps=prepared.total_steps,
            work_pixels=prepared.work_pixels,
            created_at=now,
        )

    # -- looking --------------------------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        """Unknown (or long-finished and dropped) ids raise UnknownJobError."""
        record = self._get(job_id)
        return self._snapshot(record, _Context(self, time.time()) if not record.state.finished else None)

    def jobs(self, *, session: str | None = None, group: str | None = None, limit: int = 200) -> list[JobStatus]:
        """Jobs a session watches (how a page reattaches after a rerun) or of a group, in submission
        order; with neither, the latest `limit` jobs of the store (unfinished and finished)."""
        if session is None and group is None:
            records = {record.id: record for record in self.store.recent(limit)}
            records.update((record.id, record) for record in self.store.unfinished())
            chosen = sorted(records.values(), key=lambda record: record.seq)[-limit:]
        else:
            found = self.store.find(group=group) if group is not None else self.store.find(session=session)
            chosen = [
                r for r in found if (session is None or session in r.watchers) and (group is None or group in r.groups)
            ]
        return self._snapshots(chosen)

    def unfinished(self) -> list[JobStatus]:
        """Jobs waiting or running, in submission order."""
        return self._snapshots(self.store.unfinished())

    def _snapshots(self, records: list[JobRecord]) -> list[JobStatus]:
        context = _Context(self, time.time()) if any(not r.state.finished for r in records) else None
        return [self._snapshot(record, context) for record in records]

    def recent(self, limit: int = 20) -> list[JobStatus]:
        """The most recently submitted finished jobs, newest first (for operators)."""
        return self._snapshots(self.store.recent(limit))

    def result(self, job_id: str) -> Result:
        """The result of a DONE job, from this process's memory, the result store, or the job store's
        copy of a result the result store did not keep; otherwise raises JobNotDoneError (its
        `status` tells why) or ResultGoneError."""
        record = self._get(job_id)
        if record.state is not JobState.DONE:
            raise JobNotDoneError(self.status(job_id))
        with self._lock:
            self._unread.pop(job_id, None)
            held = self._held.get(job_id)
            if held is not None:
                self._held.move_to_end(job_id)
                return held[0]
        info = record.result
        if info is not None and info.stored:
            image = None
            edits = ("inpaint", "outpaint")  # stored as what changed, around the request's own image
            if record.task in edits:
                payload = self.store.payload(job_id)
                image = request_image(payload) if payload is not None else None
            result = (
                self.studio.stored_result(info.key, image) if (image is not None or record.task not in edits) else None
            )
            if result is not None:
                return result
        elif info is not None:  # the result store did not keep it: the job store may hold a copy
            kept = self.store.kept_result(job_id)
            if kept is not None:
                return decode_result(kept, info.key)
        raise ResultGoneError("this job's result is no longer kept; run it again")

    def preview(self, job_id: str) -> Image.Image | None:
        """The latest live preview of a running job (a small image), or None. Shared: read-only."""
        record = self._get(job_id)
        if record.state is not JobState.RUNNING:
            return None
        with self._lock:
            cached = self._preview if self._preview is not None and self._preview[0] == job_id else None
        found = self.store.preview(job_id)
        if found is None:
            return None
        step, jpeg = found
        if cached is not None and cached[1] == step:
            return cached[2]
        image = Image.open(io.BytesIO(jpeg))
        image.load()
        with self._lock:
            self._preview = (job_id, step, image)
        return image

    def client_load(self, session: str) -> int:
        """Unfinished jobs counted against `session`'s per-client limit (core/clients.py)."""
        return client_load(self.store.unfinished(), session)

    def queue_length(self) -> int:
        """Jobs waiting to start (running ones not counted)."""
        return sum(1 for record in self.store.unfinished() if record.state is JobState.QUEUED)

    def workers_alive(self) -> int:
        """Workers (in any process) that beat within three lease renewals."""
        return len(self.live_workers())

    def live_workers(self) -> dict[str, float]:
        horizon = time.time() - max(3.0, self.lease_s)
        return {name: seen for name, seen in self.store.workers().items() if seen >= horizon}

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job finishes or `timeout` seconds pass; returns its status either way.
        While some `wait` of this process waits for it, its result stays in memory here."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._waiting[job_id] += 1
        try:
            while True:
                seen = self.store.generation()
                record = self._get(job_id)
                left = None if deadline is None else deadline - time.monotonic()
                if record.state.finished:
                    return self._snapshot(record, None)
                if left is not None and left <= 0:
                    return self.status(job_id)
                self.store.wait_for_change(1.0 if left is None else left, since=seen)
        finally:
            with self._lock:
                self._waiting[job_id] -= 1
                if self._waiting[job_id] <= 0:
                    del self._waiting[job_id]
                    # The waiter reads the result next: keep it held until it does (or a minute passes).
                    self._unread[job_id] = time.monotonic() + _UNREAD_KEEP_S

    # -- watching and cancelling ------------------------------------------------------------------

    def touch(self, job_id: str, session: str) -> None:
        """A page still watches the job."""
        self._get(job_id)
        self.touch_sessions([session])

    def touch_sessions(self, sessions: Iterable[str]) -> None:
        """These browser sessions are still connected: their jobs are not abandoned. Also drops
        the watchers that went quiet (the front-end calls this every few seconds)."""
        sessions, now = set(sessions), time.time()

        def beat(txn) -> None:
            policy.touch(txn, sessions, now)
            policy.drop_abandoned(txn, now, self.abandon_after_s)

        self.store.transact(beat)

    def cancel(self, job_id: str, *, session: str | None = None) -> JobStatus:
        """Cancel a job: a queued one at once, a running one at its next step (on whichever machine).

        With a session: that session stops watching, and the job is cancelled only when no other
        session watches it (the returned status then shows it going on for them). Without one
        (the API's DELETE): cancelled outright. Finished jobs are left as they are.
        """
        now = time.time()

        def stop(txn) -> None:
            record = txn.get(job_id)
            if record is None:
                raise UnknownJobError(job_id)
            policy.cancel(txn, record, session, now)

        self.store.transact(stop)  # wakes its waiters, and a running job's worker sees it at its next step
        self._forget_if_finished(job_id)
        return self.status(job_id)

    def cancel_group(self, group: str, *, session: str | None = None) -> int:
        """Cancel (or, with a session, detach from) the unfinished jobs of a batch; finished ones
        stay available. Returns how many jobs this stopped or detached from."""
        now = time.time()

        def stop(txn) -> list[str]:
            members = [record for record in txn.unfinished if group in record.groups]
            return [record.id for record in members if policy.cancel(txn, record, session, now)]

        stopped = self.store.transact(stop)
        for job_id in stopped:
            self._forget_if_finished(job_id)
        return len(stopped)

    @property
    def closing(self) -> bool:
        """shutdown() was called: new submits are refused."""
        return self._closing

    def shutdown(self, wait: bool = True) -> None:
        """Stop this process's workers: a running job goes back to the queue at its next step
        (no attempt counted) and queued jobs stay for the next process. New submits are refused."""
        self._closing = True
        for worker in self._workers:
            worker.stop()
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    # -- helpers for this process's workers --------------------------------------------------------

    def _take_prepared(self, job_id: str) -> Prepared | None:
        with self._lock:
            return self._prepared.pop(job_id, None)

    def _hold(self, job_id: str, result: Result) -> None:
        """Keep a result in memory (bounded by the bytes results really hold), the newest first kept;
        results a `wait` here still waits for are never dropped."""
        size = result.held_bytes()
        with self._lock:
            self._held[job_id] = (result, size)
            total = sum(held for _, held in self._held.values())
            now = time.monotonic()
            self._unread = {key: until for key, until in self._unread.items() if until > now}
            for old in list(self._held):
                if total <= self.keep_result_bytes:
                    break
                if old in self._waiting or old in self._unread or old == job_id:
                    continue  # a request here still waits to read it
                total -= self._held.pop(old)[1]

    def held_result_bytes(self) -> int:
        with self._lock:
            return sum(held for _, held in self._held.values())

    def _after_finish(self) -> None:
        with self._lock:
            self._estimates = None  # a new measured cost
        self._finishes += 1
        if self._finishes % 16 == 1:
            self.store.prune(keep_finished=self.keep_finished, keep_payload_bytes=self.keep_payload_bytes)
        with self._lock:  # inputs of jobs another process took or that were cancelled
            if len(self._prepared) > self.max_queue:
                unfinished = {record.id for record in self.store.unfinished() if record.state is JobState.QUEUED}
                for job_id in [job_id for job_id in self._prepared if job_id not in unfinished]:
                    del self._prepared[job_id]

    def _forget_if_finished(self, job_id: str) -> None:
        record = self.store.get(job_id)
        if record is not None and record.state.finished:
            with self._lock:
                self._prepared.pop(job_id, None)
            if record.state is not JobState.DONE:
                self.store.drop_payload(job_id)

    # -- snapshots -----------------------------------------------------------------------------------

    def _get(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id) if isinstance(job_id, str) else None
        if record is None:
            raise UnknownJobError(str(job_id))
        return record

    def _costs(self) -> dict:
        now = time.monotonic()
        with self._lock:
            if self._estimates is not None and now - self._estimates[0] < _ESTIMATE_TTL_S:
                return self._estimates[1]
        costs = self.store.costs()
        with self._lock:
            self._estimates = (now, costs)
        return costs

    def _snapshot(self, record: JobRecord, context: _Context | None) -> JobStatus:
        now = context.now if context is not None else time.time()
        progress = context.progress.get(record.id, Progress()) if context is not None else Progress()
        position = context.position.get(record.id, 0) if context is not None else 0
        eta_s = 0.0 if record.state.finished else (context.etas.get(record.id) if context is not None else None)
        if record.started_at is None:
            elapsed = 0.0
        else:
            elapsed = (record.finished_at if record.finished_at is not None else now) - record.started_at
        step = record.total_steps if record.state is JobState.DONE else progress.step
        return JobStatus(
            id=record.id,
            state=record.state,
            position=position,
            step=step,
            total=progress.total or record.total_steps,
            elapsed_s=max(0.0, elapsed),
            eta_s=eta_s,
            error=record.error,
            error_code=record.error_code,
            cached=record.cached,
            label=record.label,
            group=record.groups[0] if record.groups else None,
            key=record.key,
            model=record.model,
            cancel_requested=record.cancel_requested,
            step_s=progress.step_seconds(),
            worker=record.worker,
            attempts=record.attempts,
            age_s=max(0.0, now - record.created_at),
            seed=record.result.seed if record.result is not None else None,
            groups=tuple(record.groups),
        )
