"""The process-wide services: one Studio (catalogue, model pool, result store) and one job queue.

Pages reach them through `core/ui/state.py` (`st.cache_resource`) and the REST API directly: both get
the same objects, so they share one queue, one pool and one cache (the CLI's generate/inpaint run a
`Studio` of their own, without the queue, over the same result store on disk). The queue's
store is the one `STUDIO_QUEUE_URL` names (SQLite in `STUDIO_CACHE_DIR` when unset), shared with
every other process using the same store.
"""

from __future__ import annotations

import threading

from core.jobs import JobQueue, open_store
from core.runner import Studio
from core.settings import Settings

_lock = threading.Lock()
_studio: Studio | None = None
_queue: JobQueue | None = None


def settings() -> Settings:
    return Settings.from_env()


def studio() -> Studio:
    global _studio
    with _lock:
        if _studio is None:
            _studio = Studio.from_settings(settings())
        return _studio


def queue(*, workers: int | None = None) -> JobQueue:
    """The process's queue; `workers` overrides STUDIO_WORKERS when this call creates it."""
    global _queue
    current_studio = studio()
    with _lock:
        if _queue is None:
            config = settings()
            _queue = JobQueue(
                current_studio,
                open_store(config.queue_url, config.cache_dir),
                workers=config.workers if workers is None else workers,
                max_queue=config.max_queue,
                max_per_session=config.max_jobs_per_session,
                abandon_after_s=config.abandon_after_s,
                lease_s=config.lease_s,
            )
        return _queue


def current_queue() -> JobQueue | None:
    """The process's queue if it was built, without building it or waiting (safe on the event loop)."""
    return _queue


def reset() -> None:
    """Forget the services (tests that change the environment start afresh)."""
    global _studio, _queue
    with _lock:
        if _queue is not None:
            _queue.shutdown(wait=False)
            _queue.store.close()
        if _studio is not None:
            _studio.pool.clear()
        _studio, _queue = None, None
