"""The process-wide services: one Studio (catalogue, model pool, result store) and one job queue.

Pages reach them through `core/ui/state.py` (`st.cache_resource`) and the REST API directly: both get
the same objects, so they share one queue, one pool and one cache (the CLI's generate/inpaint run a
`Studio` of their own, without the queue, over the same result store on disk). The queue's
store is the one `STUDIO_QUEUE_URL` names (SQLite in `STUDIO_CACHE_DIR` when unset), shared with
every other process using the same store. When that SQLite file cannot be opened (an unwritable
`STUDIO_CACHE_DIR`), the queue runs on a private one in a temporary folder instead: jobs still run and
answer, they do not survive a restart, and /health says so (`job_store_problem`).
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import threading
from pathlib import Path

from core.jobs import JobQueue, JobStore, open_store
from core.runner import Studio
from core.settings import Settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_studio: Studio | None = None
_queue: JobQueue | None = None
_job_store_problem: str | None = None


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
                _open_job_store(config),
                workers=config.workers if workers is None else workers,
                max_queue=config.max_queue,
                max_per_session=config.max_jobs_per_session,
                abandon_after_s=config.abandon_after_s,
                lease_s=config.lease_s,
            )
        return _queue


def _open_job_store(config: Settings) -> JobStore:
    global _job_store_problem
    try:
        store = open_store(config.queue_url, config.cache_dir)
        _job_store_problem = None
        return store
    except (OSError, sqlite3.Error) as error:
        if config.queue_url and not config.queue_url.startswith("sqlite:"):
            raise
        from core.jobs.sqlite_store import SqliteStore

        log.warning("the job store cannot be opened (%s); jobs will not survive a restart", error)
        reason = getattr(error, "strerror", None) or str(error)  # never the path: it goes to the log only
        _job_store_problem = f"jobs do not survive a restart: the job store cannot be written ({reason})"
        return SqliteStore(Path(tempfile.mkdtemp(prefix="studio-jobs-")) / "jobs.sqlite3")


def job_store_problem() -> str | None:
    """Why jobs do not survive a restart (the job store fell back to a temporary one), or None."""
    return _job_store_problem


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
