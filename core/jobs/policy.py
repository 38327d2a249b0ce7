"""The queue's rules, written once for every backend: they run inside a store transaction on the
records of the unfinished jobs (a few dozen at most), so SQLite and Redis behave the same.

- Fairness: workers take jobs round-robin across owners (the session that submitted a job), the
  owner served longest ago first, each owner's jobs in submission order; a batch of 50 images
  does not starve a single edit.
- Leases: a running job's worker renews its lease; a job whose lease passed was lost with its
  worker and is queued again once, then failed (no crash loops).
- Abandonment: only heartbeat watchers (browser sessions) expire; a job nobody watches any more
  is cancelled. API, batch and compare watchers never expire.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from core.clients import client_load, over_the_limit
from core.errors import BusyError
from core.jobs.record import MAX_ATTEMPTS, WORKER_LOST_MESSAGE, JobRecord, JobState, Watch
from core.jobs.store import Transaction

log = logging.getLogger(__name__)

CANCELLED_MESSAGE = "the job was cancelled"


def claim_order(queued: Iterable[JobRecord], served: dict[str, int]) -> list[JobRecord]:
    """The order workers will take the queued jobs: round-robin across owners, the owner served
    longest ago (or never) first, each owner's own jobs first in, first out."""
    by_owner: dict[str, list[JobRecord]] = {}
    for record in sorted(queued, key=lambda record: record.seq):
        by_owner.setdefault(record.owner, []).append(record)
    turns = {owner: (served.get(owner, -1), jobs[0].seq) for owner, jobs in by_owner.items()}
    order = []
    tick = max(served.values(), default=0)
    while by_owner:
        owner = min(by_owner, key=turns.__getitem__)
        order.append(by_owner[owner].pop(0))
        if by_owner[owner]:
            tick += 1
            turns[owner] = (tick, by_owner[owner][0].seq)
        else:
            del by_owner[owner]
    return order


def check_limits(txn: Transaction, session: str, *, max_queue: int, max_per_session: int) -> None:
    queued = sum(1 for record in txn.unfinished if record.state is JobState.QUEUED)
    if queued >= max_queue:
        raise BusyError(f"the studio is busy: {queued} jobs are waiting; try again in a minute")
    mine = client_load(txn.unfinished, session)  # every session of one address together (core/clients.py)
    if mine >= max_per_session:
        raise over_the_limit(session, mine)


def joinable(txn: Transaction, key: str) -> JobRecord | None:
    """The unfinished job an identical request shares (never one that is being cancelled)."""
    return next((record for record in txn.unfinished if record.key == key and not record.cancel_requested), None)


def watch(record: JobRecord, session: str, heartbeat: bool, group: str | None, now: float) -> None:
    current = record.watchers.get(session)
    if current is None:
        record.watchers[session] = Watch(heartbeat, now)
    else:  # a watcher that needs no heartbeat keeps needing none
        current.heartbeat = current.heartbeat and heartbeat
        current.last_seen = now
    if group is not None and group not in record.groups:
        record.groups.append(group)


def claim(txn: Transaction, worker: str, now: float, lease_s: float) -> JobRecord | None:
    """Take the next job for `worker` (RUNNING, leased until now + lease_s), or None."""
    queued = [record for record in txn.unfinished if record.state is JobState.QUEUED]
    order = claim_order(queued, txn.served)
    if not order:
        return None
    record = order[0]
    record.state = JobState.RUNNING
    record.attempts += 1
    record.worker = worker
    record.started_at = now
    record.lease_until = now + lease_s
    # Only owners still waiting need their turn remembered; one that comes back later is new again.
    waiting = {other.owner for other in order[1:]} | {record.owner}
    tick = max(txn.served.values(), default=0) + 1
    txn.served = {owner: turn for owner, turn in txn.served.items() if owner in waiting} | {record.owner: tick}
    txn.put(record)
    return record


def recover_expired(txn: Transaction, now: float) -> list[JobRecord]:
    """Running jobs whose lease passed: queued again (same id, same place), or failed after the
    second loss. Returns the records it changed."""
    changed = []
    for record in txn.unfinished:
        if record.state is not JobState.RUNNING or record.lease_until is None or record.lease_until >= now:
            continue
        log.warning("job %s lost its worker %s (attempt %d)", record.id, record.worker, record.attempts)
        if record.cancel_requested:
            finish(txn, record, JobState.CANCELLED, now)
        elif record.attempts >= MAX_ATTEMPTS:
            finish(txn, record, JobState.FAILED, now, error=WORKER_LOST_MESSAGE, code="worker_lost")
        else:
            record.state, record.lease_until, record.started_at = JobState.QUEUED, None, None
            txn.put(record)
        changed.append(record)
    return changed


def drop_abandoned(txn: Transaction, now: float, window_s: float) -> None:
    """Detach heartbeat watchers not seen for `window_s`; cancel a job nobody watches any more."""
    deadline = now - window_s
    for record in txn.unfinished:
        if record.cancel_requested:
            continue
        gone = [name for name, seen in record.watchers.items() if seen.heartbeat and seen.last_seen < deadline]
        if not gone:
            continue
        for name in gone:
            del record.watchers[name]
        if not record.watchers:
            log.info("job %s abandoned by its watchers; cancelling it", record.id)
            stop(txn, record, now)
        else:
            txn.put(record)


def touch(txn: Transaction, sessions: set[str], now: float) -> None:
    for record in txn.unfinished:
        seen = [record.watchers[name] for name in sessions if name in record.watchers]
        for watch_ in seen:
            watch_.last_seen = now
        if seen:
            txn.put(record)


def cancel(txn: Transaction, record: JobRecord, session: str | None, now: float) -> bool:
    """With a session: that session stops watching, and the job stops only when nobody else
    watches it. Without one: it stops outright. Returns whether anything changed."""
    if record.state.finished or record.cancel_requested:
        return False
    if session is not None:
        if record.watchers.pop(session, None) is None:
            return False  # not this session's job
        if record.watchers:
            txn.put(record)
            return True
    stop(txn, record, now)
    return True


def stop(txn: Transaction, record: JobRecord, now: float) -> None:
    """A queued job is cancelled at once; a running one at its worker's next step."""
    if record.state is JobState.QUEUED:
        finish(txn, record, JobState.CANCELLED, now)
    else:
        record.cancel_requested = True
        txn.put(record)


def finish(
    txn: Transaction,
    record: JobRecord,
    state: JobState,
    now: float,
    *,
    error: str | None = None,
    code: str | None = None,
) -> None:
    record.state = state
    record.finished_at = now
    record.lease_until = None
    record.error, record.error_code = error, code
    txn.put(record)
    txn.drop_progress(record.id)  # with the same commit: nobody sees a finished job's preview
