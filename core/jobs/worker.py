"""A worker: takes the next job from the store (round-robin across clients), runs it on this
process's Studio (engines, model pool, result store), reports progress and previews through the
store, and keeps its lease alive from a side thread while it runs.

In-process workers are threads of the app (`STUDIO_WORKERS`); `python -m core worker` runs one
in a process of its own (one per GPU is the documented scale-out).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from core.engines.base import Preview
from core.errors import CancelledError, EngineError, OutOfMemoryError, StudioError
from core.jobs import eta, policy
from core.jobs.payload import decode_request, encode_result, output_sizes
from core.jobs.record import JobRecord, JobState, Progress, ResultInfo
from core.priority import lower_this_thread
from core.runner import Prepared, Result

if TYPE_CHECKING:
    from core.jobs.queue import JobQueue

log = logging.getLogger(__name__)

OUT_OF_MEMORY_MESSAGE = "ran out of memory: lower the size, steps or number of images"
UNEXPECTED_MESSAGE = "the job failed unexpectedly; the details are in the server log"
INPUTS_LOST_MESSAGE = "the job's inputs are missing (several machines must share STUDIO_CACHE_DIR); submit it again"
PREVIEW_EVERY_S = 0.5  # live previews are small JPEGs, latest only, at most this often
PREVIEW_SIDE = 256
PROGRESS_EVENT_EVERY_S = 0.25  # progress announced to live listeners at most this often (none for tiny jobs)
# Where the store can tell that nothing changed anywhere (`JobStore.news`), a report is written (and a
# check between an edit's preparing steps reads the job) only this often, or when something changed
# since the last look (a cancel, a lost lease): a job of a few milliseconds then costs no store write
# for its progress, and a cancel still stops it at its next step.
PROGRESS_WRITE_EVERY_S = 0.1
IDLE_CHECK_S = 0.25  # an idle worker looks for work and for lost leases at least this often


def worker_name(index: int = 0) -> str:
    """host:pid, and the thread's number when one process runs several workers."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    return name if index == 0 else f"{name}/{index + 1}"


class _Released(CancelledError):
    """This process is stopping: the job goes back to the queue without counting an attempt."""


class _Lost(CancelledError):
    """Our lease expired and the job went to another worker: this run's outcome is not ours."""


class Worker:
    def __init__(self, queue: JobQueue, name: str):
        self.queue = queue
        self.store = queue.store
        self.name = name
        self.stopping = threading.Event()
        self._current: JobRecord | None = None
        self._progress = Progress()  # the running job's, as last reported
        self._claimed_at: tuple[float, object] = (0.0, None)  # (time, store.news()) once the running job was claimed
        self._keeper = threading.Thread(target=self._keep_leases, name=f"lease-{name}", daemon=True)
        # The hand-over from a submit of this process (guarded by the queue's lock, see JobQueue.submit):
        self.idle = False  # waiting for work: a submit may reserve this worker and hand it its job
        self.reserved = False  # a submit's commit that may hand this worker a job is in flight
        self.handed: JobRecord | None = None  # that job, already RUNNING on this worker

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Take and run jobs until `stop()`."""
        lower_this_thread()  # in the server, inference yields the cores to the event loop (core/priority.py)
        self.store.beat(self.name, time.time())
        self.store.listen()  # cancels from other processes reach a running job through it
        self._keeper.start()
        try:
            while not self.stopping.is_set():
                try:
                    seen = self.store.generation()
                    if not self.run_one():
                        self._wait_for_work(seen)
                except Exception:  # the store is unreachable (Redis restarting...): try again shortly
                    log.exception("worker %s: the job store failed; retrying in a second", self.name)
                    self.stopping.wait(1.0)
        finally:
            with contextlib.suppress(Exception):  # a job handed over as this worker stopped goes back
                if (record := self._take_handed()) is not None:
                    self._release(record)
            with contextlib.suppress(Exception):  # a store that is gone forgets nothing
                self.store.forget_worker(self.name)

    def stop(self) -> None:
        self.stopping.set()
        self.store.notify()

    def run_one(self) -> bool:
        """Run the job a submit handed over, or claim and run one; False when there was none."""
        record = self._take_handed() or self._claim()
        if record is None:
            return False
        self._run(record)
        return True

    def _wait_for_work(self, seen: int) -> None:
        with self.queue._lock:
            self.idle = True
        try:
            self.store.wait_for_work(IDLE_CHECK_S, since=seen, worker=self.name)
        finally:
            with self.queue._lock:
                self.idle = False
                self.queue._handed_over.wait_for(lambda: not self.reserved)  # a commit in flight: its outcome first

    def _take_handed(self) -> JobRecord | None:
        with self.queue._lock:
            record, self.handed = self.handed, None
        if record is not None:
            self._claimed_at = (time.time(), self.store.news())
        return record

    def _claim(self) -> JobRecord | None:
        now = time.time()
        if not self.store.optimistic:  # a cheap read first: most idle checks find nothing to do
            unfinished = self.store.unfinished()
            lost = any(
                r.state is JobState.RUNNING and r.lease_until is not None and r.lease_until < now for r in unfinished
            )
            if not lost and not any(r.state is JobState.QUEUED for r in unfinished):
                return None
        queue = self.queue

        def take(txn):
            policy.recover_expired(txn, now)
            policy.drop_abandoned(txn, now, queue.abandon_after_s)
            return policy.claim(txn, self.name, now, queue.lease_s)

        record = self.store.transact(take)  # a job it queues again wakes the other idle workers
        self._claimed_at = (time.time(), self.store.news())  # a cancel just before this is seen within 0.1 s
        return record

    # -- one job -------------------------------------------------------------------------------------

    def _run(self, record: JobRecord) -> None:
        self._current = record
        self._progress = Progress(total=record.total_steps)
        result: Result | None = None
        state, message, code = JobState.DONE, None, None
        outcome: BaseException | None = None
        prepared = None
        try:
            prepared = self.queue._take_prepared(record.id) or self._prepare(record)
            if prepared is None:
                state, message, code = JobState.FAILED, INPUTS_LOST_MESSAGE, EngineError.code
            else:
                result = self.queue.studio.run(prepared, self._reporter(record))
        except (_Released, _Lost) as stop:
            outcome = stop
        except CancelledError:
            state = JobState.CANCELLED
        except Exception as error:  # the worker outlives every job
            state = JobState.FAILED
            if _is_out_of_memory(error):
                message, code = OUT_OF_MEMORY_MESSAGE, OutOfMemoryError.code
            elif isinstance(error, StudioError):
                message, code = error.message, error.code
            else:
                log.exception("job %s (%s) failed", record.id, record.model)
                message, code = UNEXPECTED_MESSAGE, EngineError.code
        except BaseException as error:  # KeyboardInterrupt, SystemExit...: finish the job, then go on stopping
            log.exception("job %s (%s) interrupted", record.id, record.model)
            state, message, code = JobState.FAILED, UNEXPECTED_MESSAGE, EngineError.code
            outcome = error
        finally:
            self._current = None
            if isinstance(outcome, _Released):
                self._release(record)
            elif not isinstance(outcome, _Lost):
                self._finish(record, prepared, state, result, message, code)
        # `python -m core worker` stops on an interrupt, as asked; a thread of the app goes on with
        # the next job (this one was failed above, so nothing joins it).
        in_main_thread = threading.current_thread() is threading.main_thread()
        if outcome is not None and not isinstance(outcome, (_Released, _Lost)) and in_main_thread:
            raise outcome

    def _prepare(self, record: JobRecord) -> Prepared | None:
        payload = self.store.payload(record.id)
        if payload is None:
            return None
        prepared = self.queue.studio.prepare(decode_request(payload))
        if prepared.key != record.key:  # another catalogue or engine version here: results go under this key
            log.warning("job %s: this worker computes another key for it (different catalogue or engine)", record.id)
        return prepared

    def _reporter(self, record: JobRecord):
        progress = self._progress
        last_preview, last_event = [0.0], [time.time()]
        last_write, last_news = [self._claimed_at[0]], [self._claimed_at[1]]

        def report(step: int, total: int, preview: Preview | None = None) -> None:
            now = time.time()
            progress.step, progress.total = step, total
            if progress.first_report is None:
                progress.first_report = (step, now)
            progress.last_report = (step, now)
            jpeg = None
            if preview is not None and now - last_preview[0] >= PREVIEW_EVERY_S:
                jpeg = _preview_jpeg(preview)
                if jpeg is not None:
                    progress.preview_step, last_preview[0] = step, now
            if self.stopping.is_set():
                raise _Released("the worker is stopping")
            if not look(now) and jpeg is None:
                return
            publish = now - last_event[0] >= PROGRESS_EVENT_EVERY_S
            if publish:
                last_event[0] = now
            stop_if_asked(self.store.set_progress(record.id, progress, jpeg, publish=publish))

        def check() -> None:
            """What `report` checks, without reporting progress (the runner asks between preparing steps)."""
            if self.stopping.is_set():
                raise _Released("the worker is stopping")
            if look(time.time()):
                stop_if_asked(self.store.get(record.id))

        def look(now: float) -> bool:
            """Whether to go to the store: something changed since the last look (a cancel, a lost
            lease), or the store cannot tell now, or PROGRESS_WRITE_EVERY_S passed."""
            news = self.store.news()  # before the look: a change during it counts next time
            if news is not None and news == last_news[0] and now - last_write[0] < PROGRESS_WRITE_EVERY_S:
                return False
            last_news[0], last_write[0] = news, now
            return True

        def stop_if_asked(current: JobRecord | None) -> None:
            if self.stopping.is_set():
                raise _Released("the worker is stopping")
            if current is None or current.worker != self.name or current.state is not JobState.RUNNING:
                raise _Lost("the job went to another worker")
            if current.cancel_requested:
                raise CancelledError("the job was cancelled")

        report.check = check  # type: ignore[attr-defined]
        return report

    def _finish(
        self,
        record: JobRecord,
        prepared: Prepared | None,
        state: JobState,
        result: Result | None,
        message: str | None,
        code: str | None,
    ) -> None:
        now = time.time()
        progress = self._progress
        info = None
        if state is JobState.DONE and prepared is not None:
            results = self.queue.studio.store
            stored = results is not None and result.key in results
            info = ResultInfo(result.key, prepared.request.seed, output_sizes(prepared.request), stored)
            if results is not None and not stored:  # flagged, or the result store is full or broken
                self._keep_copy(record.id, result)

        def finish(txn) -> bool:
            current = txn.get(record.id)
            if current is None or current.worker != self.name or current.state is not JobState.RUNNING:
                return False  # our lease expired and another worker has it: its outcome counts
            current.result, current.cached = info, bool(result is not None and result.cached)
            policy.finish(txn, current, state, now, error=message, code=code)
            return True

        if result is not None:  # before the commit: a waiter woken by it reads the result at once
            self.queue._hold(record.id, result)
        self.queue._await_inputs(record.id)  # a finished edit's result is composed on them, anywhere
        if not self.store.transact(finish):
            return
        if state in (JobState.DONE, JobState.CANCELLED) and not (result is not None and result.cached):
            sample = eta.measure(record, progress, now, steps_only=state is JobState.CANCELLED)
            if sample is not None:
                self.store.record_cost(eta.cost_key(record), sample)
        if state is not JobState.DONE or record.task != "inpaint":
            self.store.drop_payload(record.id)  # only a finished edit needs its input: its result is composed on it
        self.queue._after_finish()

    def _keep_copy(self, job_id: str, result: Result) -> None:
        """The job store keeps the result, so every front-end can serve it (before the commit)."""
        try:
            self.store.keep_result(job_id, encode_result(result))
        except Exception:  # this process still holds it; others answer result_gone
            log.exception("could not keep the result of job %s in the job store", job_id)

    def _release(self, record: JobRecord) -> None:
        self.queue._await_inputs(record.id)  # another worker runs it next

        def release(txn) -> None:
            current = txn.get(record.id)
            if current is not None and current.worker == self.name and current.state is JobState.RUNNING:
                current.state, current.lease_until, current.started_at, current.worker = JobState.QUEUED, None, None, None
                current.attempts -= 1
                txn.put(current)

        self.store.transact(release)  # wakes the other idle workers
        self.store.drop_progress(record.id)

    # -- leases ----------------------------------------------------------------------------------------

    def _keep_leases(self) -> None:
        interval = max(0.05, self.queue.lease_s / 3)
        while not self.stopping.wait(interval):
            now = time.time()
            try:
                self.store.beat(self.name, now)
                record = self._current
                if record is not None:
                    self.store.transact(lambda txn, job_id=record.id, at=now: self._renew(txn, job_id, at))
            except Exception:  # a store hiccup: the next beat tries again (the lease has slack)
                log.exception("worker %s could not renew its lease", self.name)

    def _renew(self, txn, job_id: str, now: float) -> None:
        current = txn.get(job_id)
        if current is not None and current.worker == self.name and current.state is JobState.RUNNING:
            current.lease_until = now + self.queue.lease_s
            txn.put(current)


def _preview_jpeg(render: Preview) -> bytes | None:
    try:
        image = render()
        image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=80)
        return buffer.getvalue()
    except Exception:  # a preview must never break the run
        log.exception("rendering a preview failed")
        return None


def _is_out_of_memory(error: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError, or a StudioError wrapping either (the runner wraps
    unexpected engine errors in EngineError)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, (MemoryError, OutOfMemoryError)) or type(error).__name__ == "OutOfMemoryError":
            return True
        error, seen = error.__cause__, seen + 1
    return False
