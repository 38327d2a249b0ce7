"""`/api/v1/health`: liveness and load, answered in milliseconds however busy the server is.

Reading the queue's state takes the job store (SQLite or Redis: a worker thread), and under load a hop
to a thread and back alone costs tens, at times hundreds, of milliseconds: the GIL and two cores are
shared with decodes, hashing and encoding (issue 13: the 48 MP upload flood of `bench/hostile.py`).
So the answer is a snapshot, served on the event loop while it is known to be current: taken after the
last job change this process's store saw (a submit, a start, an end, a cancel: its `generation`), and
less than `MAX_AGE_S` old (what only the store shows: other processes' jobs, workers' heartbeats).
Otherwise it is read again, in a thread.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any

import core
from core import services
from core.api.offload import quick
from core.errors import StudioError
from core.jobs import JobQueue

MAX_AGE_S = 1.0


@dataclass(frozen=True)
class _Snapshot:
    body: dict[str, Any]
    queue: JobQueue
    generation: int  # the store's, read before the body was
    taken: float

    def current(self) -> bool:
        """Cheap enough for the event loop: no I/O, one uncontended lock."""
        return (
            services.current_queue() is self.queue
            and time.monotonic() - self.taken < MAX_AGE_S
            and self.queue.store.generation() == self.generation
        )


class HealthReader:
    def __init__(self) -> None:
        self._snapshot: _Snapshot | None = None

    async def read(self) -> dict[str, Any]:
        snapshot = self._snapshot
        if snapshot is None or not snapshot.current():
            snapshot = self._snapshot = await quick(_take)
        return snapshot.body


def _take() -> _Snapshot:
    queue, store = services.queue(), services.studio().store
    generation, taken = queue.store.generation(), time.monotonic()
    body = {
        "status": "ok",
        "version": core.__version__,
        "device": _device(),
        "queue_length": queue.queue_length(),
        "queue_backend": queue.store.kind,
        "workers_alive": queue.workers_alive(),
        "pid": os.getpid(),
        "store": "results are not kept: no result store" if store is None else store.problem or "ok",
        "jobs": services.job_store_problem() or "ok",
    }
    return _Snapshot(body, queue, generation, taken)


@functools.cache
def _device() -> str:
    """The device inference runs on. torch is imported here, on the first call, never at import."""
    from core.devices import active_device

    try:
        return active_device(services.settings().device)
    except StudioError as error:  # a bad STUDIO_DEVICE: health still answers, and says so
        return f"misconfigured: {error.message}"


__all__ = ["MAX_AGE_S", "HealthReader"]
