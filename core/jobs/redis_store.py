"""The distributed job store: Redis, for several front-ends and workers on several machines.

Delivery and recovery use Redis's own primitives: every change of job records is one optimistic
transaction (WATCH/MULTI/EXEC on a version key; a conflict re-runs it), a worker takes a job by
writing its lease (state RUNNING, `lease_until`) in such a transaction, and a lease that passed
is found by any idle worker and the job queued again once (the reliable-queue pattern with
leases). Idle workers block on a wake-up list (BLPOP) that submits push to; progress and state
changes are published (pub/sub) so waiting requests wake at once; the latest preview JPEG of a
running job is one key, overwritten at each report (latest only).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import redis

from core.jobs.eta import Cost, first_cost
from core.jobs.record import JobRecord, Progress
from core.jobs.store import JobStore, T, Transaction

log = logging.getLogger(__name__)

_INDEX_TTL_S = 7 * 24 * 3600  # session and group indexes outlive any job kept
_PROGRESS_TTL_S = 24 * 3600  # a dead worker's progress does not stay forever
_WAKE_KEEP = 64  # wake-up tokens kept (idle workers also look every quarter second)


class RedisStore(JobStore):
    kind = "redis"
    poll_s = 0.5  # waiters are woken by pub/sub; this is only a safety net

    def __init__(self, url: str, *, prefix: str = "studio:"):
        super().__init__()
        self.url = url
        self._redis = redis.Redis.from_url(url, health_check_interval=30)
        self._redis.ping()  # a wrong URL is an error at start, not at the first job
        self._p = prefix
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    # -- records ---------------------------------------------------------------------------------

    def transact(self, fn: Callable[[Transaction], T]) -> T:
        while True:
            with self._redis.pipeline() as pipe:
                try:
                    pipe.watch(self._k("version"))
                    ids = list(pipe.smembers(self._k("unfinished")))
                    raws = pipe.mget([self._k("job", job_id.decode()) for job_id in ids]) if ids else []
                    served = json.loads(pipe.get(self._k("served")) or "{}")
                    txn = Transaction(
                        (JobRecord.from_json(raw) for raw in raws if raw is not None),
                        served,
                        lambda job_id, pipe=pipe: self._load(pipe, job_id),
                        lambda: int(self._redis.incr(self._k("seq"))),
                    )
                    value = fn(txn)
                    if not txn.changed and not txn.progress_dropped and txn.served == txn.served_before:
                        pipe.unwatch()
                        return value
                    pipe.multi()
                    for record in txn.changed.values():
                        self._write(pipe, record)
                    for job_id in txn.progress_dropped:
                        pipe.delete(self._k("progress", job_id))
                    if txn.served != txn.served_before:
                        pipe.set(self._k("served"), json.dumps(txn.served))
                    pipe.incr(self._k("version"))
                    pipe.publish(self._k("events"), b"changed")
                    pipe.execute()
                except redis.WatchError:
                    continue
            self._signal()
            return value

    def _write(self, pipe, record: JobRecord) -> None:
        pipe.set(self._k("job", record.id), record.to_json())
        if record.state.finished:
            pipe.srem(self._k("unfinished"), record.id)
            pipe.zadd(self._k("finished"), {record.id: record.seq})
        else:
            pipe.sadd(self._k("unfinished"), record.id)
        for kind, names in (("session", record.watchers), ("group", record.groups)):
            for name in names:
                index = self._k("index", kind, name)
                pipe.zadd(index, {record.id: record.seq})
                pipe.expire(index, _INDEX_TTL_S)

    def _load(self, client, job_id: str) -> JobRecord | None:
        raw = client.get(self._k("job", job_id))
        return JobRecord.from_json(raw) if raw is not None else None

    def _many(self, ids) -> list[JobRecord]:
        ids = [job_id.decode() if isinstance(job_id, bytes) else job_id for job_id in ids]
        raws = self._redis.mget([self._k("job", job_id) for job_id in ids]) if ids else []
        return sorted((JobRecord.from_json(raw) for raw in raws if raw is not None), key=lambda record: record.seq)

    def get(self, job_id: str) -> JobRecord | None:
        return self._load(self._redis, job_id)

    def unfinished(self) -> list[JobRecord]:
        return self._many(self._redis.smembers(self._k("unfinished")))

    def served(self) -> dict[str, int]:
        return json.loads(self._redis.get(self._k("served")) or "{}")

    def find(self, *, session: str | None = None, group: str | None = None) -> list[JobRecord]:
        kind, name = ("session", session) if session is not None else ("group", group)
        return self._many(self._redis.zrange(self._k("index", kind, name), 0, -1))

    def recent(self, limit: int) -> list[JobRecord]:
        return self._many(self._redis.zrevrange(self._k("finished"), 0, max(0, limit - 1)))[::-1]

    # -- payloads, progress, previews ---------------------------------------------------------------

    def put_payload(self, job_id: str, data: bytes) -> None:
        with self._redis.pipeline() as pipe:
            pipe.set(self._k("payload", job_id), data)
            pipe.hset(self._k("payload_sizes"), job_id, len(data))
            pipe.execute()

    def payload(self, job_id: str) -> bytes | None:
        return self._redis.get(self._k("payload", job_id))

    def drop_payload(self, job_id: str) -> None:
        with self._redis.pipeline() as pipe:
            pipe.delete(self._k("payload", job_id))
            pipe.hdel(self._k("payload_sizes"), job_id)
            pipe.execute()

    def set_progress(self, job_id: str, progress: Progress, preview: bytes | None = None) -> None:
        key = self._k("progress", job_id)
        fields = {"data": progress.to_json()}
        if preview is not None:
            fields |= {"preview_step": progress.preview_step, "preview": preview}
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, _PROGRESS_TTL_S)
            pipe.publish(self._k("events"), json.dumps({"id": job_id, "step": progress.step, "total": progress.total}))
            pipe.execute()

    def progress(self, job_id: str) -> Progress:
        return Progress.from_json(self._redis.hget(self._k("progress", job_id), "data"))

    def preview(self, job_id: str) -> tuple[int, bytes] | None:
        step, jpeg = self._redis.hmget(self._k("progress", job_id), ["preview_step", "preview"])
        return (int(step), jpeg) if jpeg is not None else None

    def drop_progress(self, job_id: str) -> None:
        self._redis.delete(self._k("progress", job_id))

    # -- costs and workers -------------------------------------------------------------------------

    def costs(self) -> dict[str, Cost]:
        return {key.decode(): Cost(*json.loads(value)) for key, value in self._redis.hgetall(self._k("costs")).items()}

    def record_cost(self, key: str, sample: Cost) -> None:
        raw = self._redis.hget(self._k("costs"), key)  # two workers at once: one sample is lost, no harm
        cost = first_cost(sample) if raw is None else Cost(*json.loads(raw)).smoothed(sample)
        self._redis.hset(self._k("costs"), key, json.dumps([cost.per_step, cost.head, cost.tail]))

    def beat(self, worker: str, now: float) -> None:
        self._redis.hset(self._k("workers"), worker, now)

    def forget_worker(self, worker: str) -> None:
        self._redis.hdel(self._k("workers"), worker)

    def workers(self) -> dict[str, float]:
        seen = {name.decode(): float(value) for name, value in self._redis.hgetall(self._k("workers")).items()}
        gone = [name for name, when in seen.items() if when < time.time() - 24 * 3600]
        if gone:  # workers killed long ago
            self._redis.hdel(self._k("workers"), *gone)
        return {name: when for name, when in seen.items() if name not in gone}

    # -- waking ------------------------------------------------------------------------------------

    def notify(self) -> None:
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(self._k("wake"), b"1")
            pipe.ltrim(self._k("wake"), -_WAKE_KEEP, -1)
            pipe.publish(self._k("events"), b"changed")
            pipe.execute()
        self._signal()

    def wait_for_work(self, timeout: float, since: int | None = None) -> None:
        self._redis.blpop([self._k("wake")], timeout=max(0.01, timeout))

    def wait_for_change(self, timeout: float, since: int | None = None) -> None:
        self._listen()
        super().wait_for_change(timeout, since)

    def _listen(self) -> None:
        """One subscriber thread per process turns published events into local wake-ups."""
        with self._listener_lock:
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._relay, name="studio-job-events", daemon=True)
                self._listener.start()

    def _relay(self) -> None:
        while not self._closed.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._k("events"))
                while not self._closed.is_set():
                    if pubsub.get_message(timeout=0.2) is not None:
                        self._signal()
                pubsub.close()
            except (redis.RedisError, OSError, ValueError):
                if self._closed.is_set():
                    return  # closed under our feet
                log.warning("job events: lost the Redis subscription; retrying")
                self._closed.wait(1.0)

    # -- retention ---------------------------------------------------------------------------------

    def prune(self, *, keep_finished: int, keep_payload_bytes: int) -> None:
        finished = [job_id.decode() for job_id in self._redis.zrevrange(self._k("finished"), 0, -1)]  # newest first
        if not finished:
            return
        sizes = self._redis.hmget(self._k("payload_sizes"), finished)
        held, drop_payloads = 0, []
        for job_id, size in zip(finished, sizes, strict=True):
            if size is None:
                continue
            held += int(size)
            if held > keep_payload_bytes:
                drop_payloads.append(job_id)
        old = finished[keep_finished:]
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in set(drop_payloads) | set(old):
                pipe.delete(self._k("payload", job_id))
                pipe.hdel(self._k("payload_sizes"), job_id)
            for job_id in old:
                pipe.delete(self._k("job", job_id), self._k("progress", job_id))
                pipe.zrem(self._k("finished"), job_id)
            pipe.execute()

    def payload_bytes(self) -> int:
        return sum(int(size) for size in self._redis.hvals(self._k("payload_sizes")))

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            self._listener.join(timeout=2)
        self._redis.close()
