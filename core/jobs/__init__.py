"""Jobs: the queue every inference goes through, over a job store that survives restarts and
spans machines.

- `record`: the job record, its states and the snapshot pages and the API see
- `store`: the job store interface; `sqlite_store` (default) and `redis_store` implement it
- `policy`: the queue's rules (fairness, limits, sharing, leases, abandonment), once for both stores
- `eta`: measured costs and estimated waits
- `payload`: a job's inputs as bytes
- `queue`: `JobQueue`, what pages, the batch runner and the API use
- `worker`: the loop that takes and runs jobs (threads of the app, or `python -m core worker`)
"""

from core.jobs.queue import JobQueue
from core.jobs.record import (
    MAX_ATTEMPTS,
    WORKER_LOST_MESSAGE,
    JobNotDoneError,
    JobState,
    JobStatus,
    ResultGoneError,
    UnknownJobError,
)
from core.jobs.store import JobStore, open_store
from core.jobs.worker import OUT_OF_MEMORY_MESSAGE, UNEXPECTED_MESSAGE, Worker, worker_name

__all__ = [
    "MAX_ATTEMPTS",
    "OUT_OF_MEMORY_MESSAGE",
    "UNEXPECTED_MESSAGE",
    "WORKER_LOST_MESSAGE",
    "JobNotDoneError",
    "JobQueue",
    "JobState",
    "JobStatus",
    "JobStore",
    "ResultGoneError",
    "UnknownJobError",
    "Worker",
    "open_store",
    "worker_name",
]
