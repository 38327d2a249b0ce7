"""The default job store: one SQLite file in the state folder, in WAL mode (readers never wait for
the writer), shared by every process on this machine. Nothing to install, nothing to start. Job
inputs are files beside it (`core.jobs.inputs`); the database holds their sizes."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from core.jobs.eta import Cost, first_cost
from core.jobs.inputs import FOLDER, InputFiles
from core.jobs.payload import EncodedRequest
from core.jobs.record import JobRecord, Progress
from core.jobs.store import JobStore, T, Transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, finished INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (finished, seq);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_seq ON jobs (seq);
CREATE TABLE IF NOT EXISTS links (kind TEXT NOT NULL, name TEXT NOT NULL, job_id TEXT NOT NULL,
    PRIMARY KEY (kind, name, job_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS payloads (job_id TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS results (job_id TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS progress (job_id TEXT PRIMARY KEY, data TEXT NOT NULL, preview_step INTEGER, preview BLOB);
CREATE TABLE IF NOT EXISTS costs (key TEXT PRIMARY KEY, per_step REAL, head REAL, tail REAL);
CREATE TABLE IF NOT EXISTS workers (name TEXT PRIMARY KEY, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SqliteStore(JobStore):
    kind = "sqlite"

    def __init__(self, path: Path, inputs: Path | None = None):
        """`inputs`: the folder of job inputs (default: beside the database)."""
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._inputs = InputFiles(inputs if inputs is not None else self.path.parent / FOLDER)
        self._local = threading.local()  # one connection per thread (sqlite3's rule)
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self._local.db = db
        return db

    # -- records ---------------------------------------------------------------------------------

    def transact(self, fn: Callable[[Transaction], T]) -> T:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        written: list[str] = []
        try:
            rows = db.execute("SELECT data FROM jobs WHERE finished = 0 ORDER BY seq").fetchall()
            served = json.loads(self._meta(db, "served") or "{}")
            seqs = itertools.count(db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0])
            txn = Transaction(
                (JobRecord.from_json(row[0]) for row in rows),
                served,
                lambda job_id: self._get(db, job_id),
                seqs.__next__,
            )
            value = fn(txn)
            for record in txn.changed.values():
                db.execute(
                    "INSERT INTO jobs (id, seq, finished, data) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
                    "SET finished = excluded.finished, data = excluded.data",
                    (record.id, record.seq, int(record.state.finished), record.to_json()),
                )
                links = [("session", name, record.id) for name in record.watchers]
                links += [("group", name, record.id) for name in record.groups]
                db.executemany("INSERT OR IGNORE INTO links VALUES (?, ?, ?)", links)
            for job_id, data in txn.payloads.items():
                written.append(job_id)
                self._write_payload(db, job_id, data)
            db.executemany("DELETE FROM progress WHERE job_id = ?", [(job_id,) for job_id in txn.progress_dropped])
            if txn.served != txn.served_before:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('served', ?)", (json.dumps(txn.served),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._inputs.drop(written)
            raise
        if txn.changed:
            self._signal()
        return value

    @staticmethod
    def _meta(db: sqlite3.Connection, name: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _get(db: sqlite3.Connection, job_id: str) -> JobRecord | None:
        row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord.from_json(row[0]) if row else None

    def get(self, job_id: str) -> JobRecord | None:
        return self._get(self._connection(), job_id)

    def unfinished(self) -> list[JobRecord]:
        rows = self._connection().execute("SELECT data FROM jobs WHERE finished = 0 ORDER BY seq").fetchall()
        return [JobRecord.from_json(row[0]) for row in rows]

    def served(self) -> dict[str, int]:
        return json.loads(self._meta(self._connection(), "served") or "{}")

    def find(self, *, session: str | None = None, group: str | None = None) -> list[JobRecord]:
        kind, name = ("session", session) if session is not None else ("group", group)
        rows = (
            self._connection()
            .execute(
                "SELECT jobs.data FROM links JOIN jobs ON jobs.id = links.job_id WHERE kind = ? AND name = ? ORDER BY seq",
                (kind, name),
            )
            .fetchall()
        )
        return [JobRecord.from_json(row[0]) for row in rows]

    def recent(self, limit: int) -> list[JobRecord]:
        rows = (
            self._connection()
            .execute("SELECT data FROM jobs WHERE finished = 1 ORDER BY seq DESC LIMIT ?", (limit,))
            .fetchall()
        )
        return [JobRecord.from_json(row[0]) for row in rows]

    # -- payloads, progress, previews ---------------------------------------------------------------

    def put_payload(self, job_id: str, data: EncodedRequest) -> None:
        self._inputs.write(job_id, data)  # before any transaction: no writer waits for it
        try:
            self._record_payload(self._connection(), job_id, data)
        except BaseException:
            self._inputs.drop([job_id])
            raise

    def _write_payload(self, db: sqlite3.Connection, job_id: str, data: EncodedRequest) -> None:
        """Within a transaction: the file, then its row."""
        self._inputs.write(job_id, data)
        self._record_payload(db, job_id, data)

    @staticmethod
    def _record_payload(db: sqlite3.Connection, job_id: str, data: EncodedRequest) -> None:
        db.execute("INSERT OR REPLACE INTO payloads VALUES (?, ?, x'')", (job_id, data.size))

    def payload(self, job_id: str) -> bytes | None:
        row = (
            self._connection()
            .execute("SELECT size, CASE WHEN length(data) > 0 THEN data END FROM payloads WHERE job_id = ?", (job_id,))
            .fetchone()
        )
        if row is None:
            return None
        if row[1] is not None:  # written into the database by an earlier version (queued before an upgrade)
            return row[1]
        return self._inputs.read(job_id, row[0])

    def drop_payload(self, job_id: str) -> None:
        self._connection().execute("DELETE FROM payloads WHERE job_id = ?", (job_id,))
        self._inputs.drop([job_id])

    def keep_result(self, job_id: str, data: bytes) -> None:
        self._connection().execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (job_id, len(data), data))

    def kept_result(self, job_id: str) -> bytes | None:
        row = self._connection().execute("SELECT data FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return bytes(row[0]) if row else None

    def set_progress(
        self, job_id: str, progress: Progress, preview: bytes | None = None, *, publish: bool = False
    ) -> JobRecord | None:
        db = self._connection()  # `publish`: nothing listens to a file; readers poll
        if preview is None:
            db.execute(
                "INSERT INTO progress (job_id, data) VALUES (?, ?) ON CONFLICT (job_id) DO UPDATE SET data = excluded.data",
                (job_id, progress.to_json()),
            )
        else:
            db.execute(
                "INSERT OR REPLACE INTO progress VALUES (?, ?, ?, ?)",
                (job_id, progress.to_json(), progress.preview_step, preview),
            )
        return self._get(db, job_id)

    def progress(self, job_id: str) -> Progress:
        row = self._connection().execute("SELECT data FROM progress WHERE job_id = ?", (job_id,)).fetchone()
        return Progress.from_json(row[0] if row else None)

    def preview(self, job_id: str) -> tuple[int, bytes] | None:
        row = (
            self._connection()
            .execute("SELECT preview_step, preview FROM progress WHERE job_id = ? AND preview IS NOT NULL", (job_id,))
            .fetchone()
        )
        return (row[0], bytes(row[1])) if row else None

    def drop_progress(self, job_id: str) -> None:
        self._connection().execute("DELETE FROM progress WHERE job_id = ?", (job_id,))

    # -- costs and workers -------------------------------------------------------------------------

    def costs(self) -> dict[str, Cost]:
        rows = self._connection().execute("SELECT key, per_step, head, tail FROM costs").fetchall()
        return {key: Cost(per_step, head, tail) for key, per_step, head, tail in rows}

    def record_cost(self, key: str, sample: Cost) -> None:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT per_step, head, tail FROM costs WHERE key = ?", (key,)).fetchone()
            cost = first_cost(sample) if row is None else Cost(*row).smoothed(sample)
            db.execute("INSERT OR REPLACE INTO costs VALUES (?, ?, ?, ?)", (key, cost.per_step, cost.head, cost.tail))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def beat(self, worker: str, now: float) -> None:
        self._connection().execute("INSERT OR REPLACE INTO workers VALUES (?, ?)", (worker, now))

    def forget_worker(self, worker: str) -> None:
        self._connection().execute("DELETE FROM workers WHERE name = ?", (worker,))

    def workers(self) -> dict[str, float]:
        return dict(self._connection().execute("SELECT name, seen FROM workers").fetchall())

    # -- waking ------------------------------------------------------------------------------------

    def notify(self) -> None:
        self._signal()  # other processes poll

    def news(self) -> tuple[int, int]:
        # data_version changes when another connection (another thread or process) commits; the
        # generation when this process commits.
        return self.generation(), self._connection().execute("PRAGMA data_version").fetchone()[0]

    def wait_for_work(self, timeout: float, since: int | None = None, *, worker: str = "") -> None:
        self._wait(min(timeout, 0.1), since)  # other processes' submits: seen at the next look

    # -- retention ---------------------------------------------------------------------------------

    def prune(self, *, keep_finished: int, keep_payload_bytes: int) -> None:
        db = self._connection()
        rows = db.execute(
            "SELECT jobs.id, COALESCE(payloads.size, 0) + COALESCE(results.size, 0) FROM jobs "
            "LEFT JOIN payloads ON payloads.job_id = jobs.id LEFT JOIN results ON results.job_id = jobs.id "
            "WHERE jobs.finished = 1 AND (payloads.size IS NOT NULL OR results.size IS NOT NULL) ORDER BY jobs.seq DESC"
        ).fetchall()
        held, dropped = 0, []
        for job_id, size in rows:
            held += size
            if held > keep_payload_bytes:
                dropped.append((job_id,))
        for table in ("payloads", "results"):
            db.executemany(f"DELETE FROM {table} WHERE job_id = ?", dropped)  # noqa: S608 (fixed names)
        self._inputs.drop(job_id for (job_id,) in dropped)
        old = db.execute(
            "SELECT id FROM jobs WHERE finished = 1 ORDER BY seq DESC LIMIT -1 OFFSET ?", (keep_finished,)
        ).fetchall()
        for table, column in (
            ("payloads", "job_id"),
            ("results", "job_id"),
            ("progress", "job_id"),
            ("links", "job_id"),
            ("jobs", "id"),
        ):
            db.executemany(f"DELETE FROM {table} WHERE {column} = ?", old)  # noqa: S608 (fixed names)
        self._inputs.drop(job_id for (job_id,) in old)

    def payload_bytes(self) -> int:
        return self._connection().execute(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM payloads) + (SELECT COALESCE(SUM(size), 0) FROM results)"
        ).fetchone()[0]

    def close(self) -> None:
        """Close this thread's connection. Other threads' connections close with their threads:
        closing a connection another thread is using can crash the interpreter."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
