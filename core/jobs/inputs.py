"""Job inputs as files, one per job, in `STUDIO_CACHE_DIR/job-inputs`: the folder every process that
runs or shows a job can read (one machine's, or the shared folder of several machines with Redis,
where the result store already lives). The job store keeps each file's size (what retention counts
and what tells a whole file from one cut short).

Not in the job store itself: a 600-px edit carries 1.4 MB of pixels and a 48 MP one 190 MB. In SQLite
they went through the write-ahead log and again into the database at each checkpoint, inside the
submit's transaction (5 ms per 600-px job; a file: 1 ms); sent to Redis they cost 2.7 ms of CPU on
the submit path and Redis memory for every finished edit. A queued job's file is written before the
commit that creates the job, so a worker never sees the job without it; a job handed at submit to an
idle worker of the same process (`JobQueue.submit`) has its file written beside the run instead, and
its result commits only once the file is there. A file has the commit's durability on SQLite (WAL
with synchronous=NORMAL: a process crash loses neither, a power cut may lose the newest of both); a
file shorter than its recorded size counts as lost, and the worker says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from core.jobs.payload import EncodedRequest

FOLDER = "job-inputs"
_JOB_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")  # job ids are hex tokens: safe as file names


class InputFiles:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str) -> Path:
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.folder / job_id

    def write(self, job_id: str, data: EncodedRequest) -> None:
        """Piece by piece: each write lets the GIL go, and no copy of the whole request is made."""
        with open(self._path(job_id), "wb") as file:
            written = sum(file.write(chunk) for chunk in data.chunks())
        if written != data.size:
            raise RuntimeError("the pixel encoder wrote an unexpected number of bytes")

    def read(self, job_id: str, size: int) -> bytes | None:
        """The inputs, or None when the file is missing or is not `size` bytes long."""
        try:
            data = self._path(job_id).read_bytes()  # one read: the GIL is free meanwhile
        except FileNotFoundError:
            return None
        return data if len(data) == size else None

    def drop(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._path(job_id).unlink(missing_ok=True)
