"""The distributed job store: Redis, for several front-ends and workers on several machines.

Delivery and recovery use Redis's own primitives. Every change of job records is one round trip:
the store reads a snapshot of the unfinished jobs (one Lua script), runs the queue's rules on it
(`core.jobs.policy`, the same code as SQLite's), and commits the changes with a second Lua script
that applies them only if the version key is still the one read (compare-and-set, atomic on the
server; a conflict returns the fresh snapshot in the same reply and the rules run again). A worker
takes a job by writing its lease (state RUNNING, `lease_until`) that way, and a lease that passed is
found by any idle worker and the job queued again once (the reliable-queue pattern with leases).
A commit that queues a job pushes a wake-up token that idle workers block on (BLPOP); every commit
publishes a state-change event (pub/sub) so waiting requests in every process wake at once. A
running job's progress and latest preview JPEG are one hash, overwritten at each report (latest
only); progress is also published on its own channel, at most every quarter second per job.

One Redis server (or a primary with replicas), not a cluster: the scripts reach job keys by name.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from core.jobs.eta import Cost, first_cost
from core.jobs.inputs import InputFiles
from core.jobs.payload import EncodedRequest
from core.jobs.record import JobRecord, Progress
from core.jobs.store import JobStore, T, Transaction

log = logging.getLogger(__name__)

_INDEX_TTL_S = 7 * 24 * 3600  # session and group indexes outlive any job kept
_PROGRESS_TTL_S = 24 * 3600  # a dead worker's progress does not stay forever
_FINISHED_HERE = 64  # records of jobs this process finished, read here without a round trip
_WAKE_KEEP = 8  # tokens wait only while no worker blocks (busy ones look at the store before blocking)

# The unfinished jobs as one reply: version, last seq, fairness state, then each job's id and JSON.
_SNAPSHOT_LUA = """
local function snapshot(p)
  local out = {redis.call('GET', p .. 'version') or '0', redis.call('GET', p .. 'seq') or '0',
               redis.call('GET', p .. 'served') or '{}'}
  for _, id in ipairs(redis.call('SMEMBERS', p .. 'unfinished')) do
    local raw = redis.call('GET', p .. 'job:' .. id)
    if raw then
      out[#out + 1] = id
      out[#out + 1] = raw
    end
  end
  return out
end
"""

# ARGV: prefix[, version]: with a version still current, only {'same'}.
_READ = (
    _SNAPSHOT_LUA
    + """
if ARGV[2] and (redis.call('GET', ARGV[1] .. 'version') or '0') == ARGV[2] then return {'same'} end
return snapshot(ARGV[1])
"""
)

# ARGV: prefix, expected version, new seq ('' = unchanged), served JSON ('' = unchanged), the wake-up
# list to push to ('' = none; 'wake' = every idle worker's, 'wake:<worker>' = one worker's), event
# payload, index TTL, then the records: count, and for each id, seq, finished ('1'/'0'), JSON, index
# count, indexes ("session:<name>", "group:<name>"); then the jobs whose progress goes: count, ids.
_COMMIT = (
    _SNAPSHOT_LUA
    + """
local p = ARGV[1]
if (redis.call('GET', p .. 'version') or '0') ~= ARGV[2] then
  local fresh = snapshot(p)
  table.insert(fresh, 1, 'conflict')
  return fresh
end
local i = 8
for _ = 1, tonumber(ARGV[i]) do
  local id, seq, finished, data, indexes = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  i = i + 5
  redis.call('SET', p .. 'job:' .. id, data)
  if finished == '1' then
    redis.call('SREM', p .. 'unfinished', id)
    redis.call('ZADD', p .. 'finished', seq, id)
  else
    redis.call('SADD', p .. 'unfinished', id)
  end
  for _ = 1, indexes do
    i = i + 1
    redis.call('ZADD', p .. 'index:' .. ARGV[i], seq, id)
    redis.call('EXPIRE', p .. 'index:' .. ARGV[i], ARGV[7])
  end
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  i = i + 1
  redis.call('DEL', p .. 'progress:' .. ARGV[i])
end
if ARGV[3] ~= '' then redis.call('SET', p .. 'seq', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('SET', p .. 'served', ARGV[4]) end
redis.call('INCR', p .. 'version')
if ARGV[5] ~= '' then
  redis.call('RPUSH', p .. ARGV[5], '1')
  redis.call('LTRIM', p .. ARGV[5], -WAKE_KEEP, -1)
  redis.call('EXPIRE', p .. ARGV[5], 3600)
end
redis.call('PUBLISH', p .. 'events', ARGV[6])
return {'ok'}
""".replace("WAKE_KEEP", str(_WAKE_KEEP))
)


@dataclass(frozen=True)
class _Snapshot:
    """The unfinished jobs at one version of the store, as the scripts return them."""

    version: bytes
    seq: int  # the last submission number handed out
    served: bytes  # the fairness state's JSON
    records: dict[str, bytes]  # job id -> record JSON

    @classmethod
    def of(cls, reply: list) -> _Snapshot:
        version, seq, served, *pairs = reply
        records = {job_id.decode(): raw for job_id, raw in zip(pairs[::2], pairs[1::2], strict=True)}
        return cls(version, int(seq), served, records)

    def newer_than(self, other: _Snapshot) -> bool:
        return int(self.version) > int(other.version)


class RedisStore(JobStore):
    kind = "redis"
    optimistic = True
    poll_s = 0.5  # waiters are woken by pub/sub; this is only a safety net

    def __init__(self, url: str, inputs: Path, *, prefix: str = "studio:"):
        """`inputs`: the folder of job inputs, shared by every machine (`core.jobs.inputs`)."""
        super().__init__()
        self.url = url
        self._inputs = InputFiles(inputs)
        self._redis = redis.Redis.from_url(url, health_check_interval=30)
        self._redis.ping()  # a wrong URL is an error at start, not at the first job
        self._p = prefix
        self._origin = secrets.token_hex(8).encode()  # our own events: already signalled here
        self._read = self._redis.register_script(_READ)
        self._commit = self._redis.register_script(_COMMIT)
        self._last: _Snapshot | None = None  # the newest snapshot of the unfinished jobs this process saw
        self._last_lock = threading.Lock()
        # Finished records never change again: the waiter of a job a worker here finished reads its
        # record from memory (until pruning, which keeps far more than these).
        self._finished_here: OrderedDict[str, bytes] = OrderedDict()
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        self._subscribed = threading.Event()
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    # -- records ---------------------------------------------------------------------------------

    def transact(self, fn: Callable[[Transaction], T]) -> T:
        # Optimistic: the rules run on the last snapshot this process saw (no round trip), and the
        # commit checks it is still current. A transaction that changes nothing, or refuses, checks
        # its snapshot with one small read before it answers.
        state, checked = self._last, False
        if state is None:
            state, checked = self._fetch(), True
        sent: set[str] = set()  # new jobs' inputs already written (a conflict's second run may not use them)
        while True:
            seqs = itertools.count(state.seq + 1)
            txn = Transaction(
                (JobRecord.from_json(raw) for raw in state.records.values()),
                json.loads(state.served),
                lambda job_id: self._load(self._redis, job_id),
                seqs.__next__,
            )
            try:
                value = fn(txn)
            except Exception:
                if not checked and (fresh := self._fetch(state.version)) is not None:
                    state, checked = fresh, True
                    continue
                self._drop_payloads(sent)
                raise
            if not txn.changed and not txn.progress_dropped and txn.served == txn.served_before:
                if not checked and (fresh := self._fetch(state.version)) is not None:
                    state, checked = fresh, True
                    continue
                self._drop_payloads(sent)
                return value
            used_seq = next(seqs) - 1
            args, after, finished = self._commit_args(txn, state, used_seq)
            reply = self._send(args, {job_id: data for job_id, data in txn.payloads.items() if job_id not in sent})
            sent |= txn.payloads.keys()
            if reply[0] == b"ok":
                self._remember(after, finished)
                self._signal()
                self._drop_payloads(sent - txn.payloads.keys())
                return value
            state, checked = self._remember(_Snapshot.of(reply[1:])), True  # another process came first

    def _send(self, args: list, payloads: dict[str, EncodedRequest]) -> list:
        """The commit, after new jobs' inputs are in their files and their sizes in the same round trip
        (so they exist before the job does)."""
        if not payloads:
            return self._commit(args=args)
        try:
            for job_id, data in payloads.items():
                self._inputs.write(job_id, data)
        except BaseException:  # a full disk: no job was created
            self._inputs.drop(payloads)
            raise
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._k("payload_sizes"), mapping={job_id: data.size for job_id, data in payloads.items()})
            pipe.evalsha(self._commit.sha, 0, *args)
            try:
                return pipe.execute()[-1]
            except redis.exceptions.NoScriptError:  # Redis restarted: the script call loads it again
                return self._commit(args=args)

    def _drop_payloads(self, job_ids) -> None:
        """Inputs sent with a commit that lost, for jobs the rules then did not create."""
        for job_id in job_ids:
            self.drop_payload(job_id)

    def _fetch(self, version: bytes | None = None) -> _Snapshot | None:
        """The unfinished jobs as they are now, or None when `version` is still current."""
        reply = self._read(args=[self._p] if version is None else [self._p, version])
        return None if reply == [b"same"] else self._remember(_Snapshot.of(reply))

    def _remember(self, state: _Snapshot, finished: dict[str, bytes] | None = None) -> _Snapshot:
        with self._last_lock:  # threads may finish out of order: keep the newest
            if self._last is None or state.newer_than(self._last):
                self._last = state
            self._finished_here.update(finished or {})
            while len(self._finished_here) > _FINISHED_HERE:
                self._finished_here.popitem(last=False)
        return state

    def _commit_args(
        self, txn: Transaction, state: _Snapshot, used_seq: int
    ) -> tuple[list, _Snapshot, dict[str, bytes]]:
        """The commit script's arguments, the snapshot that holds once it succeeds, and the records
        it finishes."""
        served = state.served if txn.served == txn.served_before else json.dumps(txn.served).encode()
        args: list = [
            self._p,
            state.version,
            used_seq if used_seq > state.seq else "",
            "" if served is state.served else served,
            f"wake:{txn.woken}" if txn.woken else ("wake" if txn.queues_work() else ""),
            self._origin,
            _INDEX_TTL_S,
            len(txn.changed),
        ]
        records, finished = dict(state.records), {}
        for record in txn.changed.values():
            raw = record.to_json().encode()
            if record.state.finished:
                records.pop(record.id, None)
                finished[record.id] = raw
            else:
                records[record.id] = raw
            indexes = [f"session:{name}" for name in record.watchers] + [f"group:{name}" for name in record.groups]
            args += [record.id, record.seq, int(record.state.finished), raw, len(indexes), *indexes]
        args += [len(txn.progress_dropped), *txn.progress_dropped]
        version = str(int(state.version) + 1).encode()
        return args, _Snapshot(version, max(used_seq, state.seq), served, records), finished

    def _load(self, client, job_id: str) -> JobRecord | None:
        raw = client.get(self._k("job", job_id))
        return JobRecord.from_json(raw) if raw is not None else None

    def _many(self, ids) -> list[JobRecord]:
        ids = [job_id.decode() if isinstance(job_id, bytes) else job_id for job_id in ids]
        raws = self._redis.mget([self._k("job", job_id) for job_id in ids]) if ids else []
        return sorted((JobRecord.from_json(raw) for raw in raws if raw is not None), key=lambda record: record.seq)

    def get(self, job_id: str) -> JobRecord | None:
        with self._last_lock:
            raw = self._finished_here.get(job_id)
        return JobRecord.from_json(raw) if raw is not None else self._load(self._redis, job_id)

    def unfinished(self) -> list[JobRecord]:
        state = self._fetch()
        return sorted((JobRecord.from_json(raw) for raw in state.records.values()), key=lambda record: record.seq)

    def served(self) -> dict[str, int]:
        return json.loads(self._redis.get(self._k("served")) or "{}")

    def find(self, *, session: str | None = None, group: str | None = None) -> list[JobRecord]:
        kind, name = ("session", session) if session is not None else ("group", group)
        return self._many(self._redis.zrange(self._k("index", kind, name), 0, -1))

    def recent(self, limit: int) -> list[JobRecord]:
        return self._many(self._redis.zrevrange(self._k("finished"), 0, max(0, limit - 1)))[::-1]

    # -- payloads, progress, previews ---------------------------------------------------------------

    def put_payload(self, job_id: str, data: EncodedRequest) -> None:
        self._inputs.write(job_id, data)
        self._redis.hset(self._k("payload_sizes"), job_id, data.size)

    def payload(self, job_id: str) -> bytes | None:
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._k("payload_sizes"), job_id)
            pipe.get(self._k("payload", job_id))  # where an earlier version kept inputs queued before an upgrade
            size, inline = pipe.execute()
        if inline is not None:
            return inline
        return self._inputs.read(job_id, int(size)) if size is not None else None

    def drop_payload(self, job_id: str) -> None:
        with self._redis.pipeline() as pipe:
            pipe.delete(self._k("payload", job_id))
            pipe.hdel(self._k("payload_sizes"), job_id)
            pipe.execute()
        self._inputs.drop([job_id])

    def keep_result(self, job_id: str, data: bytes) -> None:
        with self._redis.pipeline() as pipe:
            pipe.set(self._k("result", job_id), data)
            pipe.hset(self._k("result_sizes"), job_id, len(data))
            pipe.execute()

    def kept_result(self, job_id: str) -> bytes | None:
        return self._redis.get(self._k("result", job_id))

    def set_progress(
        self, job_id: str, progress: Progress, preview: bytes | None = None, *, publish: bool = False
    ) -> JobRecord | None:
        key = self._k("progress", job_id)
        fields = {"data": progress.to_json()}
        if preview is not None:
            fields |= {"preview_step": progress.preview_step, "preview": preview}
        with self._redis.pipeline(transaction=False) as pipe:  # one round trip; no atomicity needed
            pipe.hset(key, mapping=fields)
            pipe.expire(key, _PROGRESS_TTL_S)
            if publish:
                pipe.publish(self._k("progress"), json.dumps({"id": job_id, "step": progress.step, "total": progress.total}))
            pipe.get(self._k("job", job_id))
            raw = pipe.execute()[-1]
        return JobRecord.from_json(raw) if raw is not None else None

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
            pipe.publish(self._k("events"), self._origin)
            pipe.execute()
        self._signal()

    def wait_for_work(self, timeout: float, since: int | None = None, *, worker: str = "") -> None:
        keys = [self._k("wake", worker), self._k("wake")] if worker else [self._k("wake")]
        self._redis.blpop(keys, timeout=max(0.01, timeout))

    def news(self) -> int | None:
        return self.generation() if self._subscribed.is_set() else None  # subscribed: it counts every change

    def wait_for_change(self, timeout: float, since: int | None = None) -> None:
        self.listen()
        super().wait_for_change(timeout, since)

    def listen(self) -> None:
        """One subscriber thread per process turns other processes' events into local wake-ups;
        the first waiter waits (briefly) for the subscription, so no event after it is missed."""
        with self._listener_lock:
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._relay, name="studio-job-events", daemon=True)
                self._listener.start()
        self._subscribed.wait(timeout=1.0)

    def _relay(self) -> None:
        while not self._closed.is_set():
            try:
                pubsub = self._redis.pubsub()
                pubsub.subscribe(self._k("events"))
                confirmed = pubsub.get_message(timeout=1.0)
                if confirmed is None or confirmed["type"] != "subscribe":
                    raise redis.ConnectionError("the subscription was not confirmed")
                self._subscribed.set()
                self._signal()  # anything committed before now: waiters look again
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    # Not ours (signalled already), or subscribed again after a reconnection (some missed)
                    if message is not None and (message["type"] != "message" or message["data"] != self._origin):
                        self._signal()
                self._subscribed.clear()
                pubsub.close()
            except (redis.RedisError, OSError, ValueError):
                if self._closed.is_set():
                    return  # closed under our feet
                if self._subscribed.is_set():  # once per outage
                    log.warning("job events: lost the Redis subscription; retrying every second")
                self._subscribed.clear()  # events may be missed until subscribed again
                self._closed.wait(1.0)

    # -- retention ---------------------------------------------------------------------------------

    def prune(self, *, keep_finished: int, keep_payload_bytes: int) -> None:
        if keep_finished < _FINISHED_HERE:
            with self._last_lock:
                self._finished_here.clear()
        finished = [job_id.decode() for job_id in self._redis.zrevrange(self._k("finished"), 0, -1)]  # newest first
        if not finished:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self._k("payload_sizes"), finished)
            pipe.hmget(self._k("result_sizes"), finished)
            inputs, results = pipe.execute()
        held, drop = 0, []
        for job_id, *sizes in zip(finished, inputs, results, strict=True):
            held += sum(int(size) for size in sizes if size is not None)
            if held > keep_payload_bytes and any(size is not None for size in sizes):
                drop.append(job_id)
        old = finished[keep_finished:]
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in set(drop) | set(old):
                pipe.delete(self._k("payload", job_id), self._k("result", job_id))
                pipe.hdel(self._k("payload_sizes"), job_id)
                pipe.hdel(self._k("result_sizes"), job_id)
            for job_id in old:
                pipe.delete(self._k("job", job_id), self._k("progress", job_id))
                pipe.zrem(self._k("finished"), job_id)
            pipe.execute()
        self._inputs.drop(set(drop) | set(old))

    def payload_bytes(self) -> int:
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hvals(self._k("payload_sizes"))
            pipe.hvals(self._k("result_sizes"))
            return sum(int(size) for sizes in pipe.execute() for size in sizes)

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            self._listener.join(timeout=2)
        self._redis.close()
