"""The durable, content-addressed result store shared by every entry point (keys: `core.keys`).

On disk, one entry is a directory `root/<key[:2]>/<key>/` holding `0.png`, `1.png`, ... and
`meta.json` (the caller's metadata plus each PNG's size and BLAKE3 digest, and a digest of the
whole record). Nothing is ever pickled: a poisoned cache directory can at worst serve wrong
pixels, never run code. An entry is written into `root/.tmp/` and published by renaming the
directory, so readers see all of it or nothing; anything that does not verify is a miss and
is removed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from core.keys import KEY_LENGTH, canonical_json, digest_bytes

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_KEY_PATTERN = re.compile(rf"[0-9a-f]{{{KEY_LENGTH}}}")
_SHARD_PATTERN = re.compile(r"[0-9a-f]{2}")
_ENTRY_FORMAT = 1
_META = "meta.json"
_TEMP_DIR = ".tmp"  # unpublished writes and entries being deleted; swept when stale
SWEEP_EVERY_S = 600.0  # a running server sweeps stale leftovers this often (when it stores something)
_LOCK_FILE = ".lock"
_USAGE_FILE = ".usage"
_RESCAN_EVERY = 256  # puts between exact size rescans, bounding any drift of the running total
_DERIVED_PATTERN = re.compile(r"[a-z][a-z0-9-]*\.(webp|png|jpg)")  # never a name the entry's own files use


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
        raise ValueError(f"a result key is {KEY_LENGTH} lowercase hex characters")
    return key


@dataclass(frozen=True)
class StoredResult:
    pngs: tuple[bytes, ...]
    metadata: dict


class _Damaged(Exception):
    """An entry that does not verify: treated as a miss and removed."""


@dataclass(frozen=True)
class ListedEntry:
    """One published entry as `listing` sees it: its metadata, never its PNGs."""

    key: str
    created: float  # when the entry was written (seconds since the epoch)
    metadata: dict
    images: int


@dataclass(frozen=True)
class _EntryUsage:
    recency_ns: int
    key: str
    path: Path
    size: int


class ResultStore:
    """PNG results by key, bounded to `max_bytes` by evicting the least recently used entries.

    Safe to share between threads and processes. Storing is best effort: a failing disk is
    logged and the result simply is not cached (the caller still has it); reading a damaged
    entry is a miss. `max_bytes` counts the files of published entries.
    """

    def __init__(self, root: Path, max_bytes: int):
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._temp = self.root / _TEMP_DIR
        self.problem: str | None = None  # why results are not being kept now (for /health); None when they are
        try:
            self._temp.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=self._temp).close()  # writable, not only there
        except OSError as error:
            self._degrade(error)
        else:
            self.sweep_orphans()
        self._swept_at = time.monotonic()

    # -- reading --------------------------------------------------------------------------

    def get(self, key: str) -> StoredResult | None:
        entry = self._entry_path(key)
        try:
            identity = _identity(entry)
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("result store: cannot read an entry (%s)", error.strerror)
            return None
        try:
            stored = _read_entry(entry, key)
        except _Damaged as damage:
            log.warning("result store: entry %s is damaged (%s); removing it", key[:12], damage)
            self._discard(entry, identity)
            return None
        except OSError as error:
            log.warning("result store: cannot read entry %s (%s)", key[:12], error.strerror)
            return None
        _mark_used(entry / _META)
        return stored

    def __contains__(self, key: object) -> bool:
        """Cheap: whether an entry is published under `key` (`get` still verifies it)."""
        return (self._entry_path(key) / _META).is_file()

    def total_bytes(self) -> int:
        """The exact size of every published entry, measured now."""
        return sum(usage.size for usage in self._scan())

    def listing(self) -> list[ListedEntry]:
        """Every published entry, newest first, from its meta.json alone: parsed and its shape
        checked, but neither its digest nor the PNGs verified (that is `get`'s work when an entry is
        opened), so 2,000 entries list in a fraction of a second. Entries that do not parse are left
        out; `get` removes them when asked for."""
        found = []
        for shard in _subdirectories(self.root):
            if not _SHARD_PATTERN.fullmatch(shard.name):
                continue
            for entry in _subdirectories(shard.path):
                if not _KEY_PATTERN.fullmatch(entry.name):
                    continue
                try:
                    with open(os.path.join(entry.path, _META), "rb") as file:
                        record = json.loads(file.read())
                    created = os.stat(os.path.join(entry.path, "0.png")).st_mtime  # written once, never touched
                except (OSError, ValueError):
                    continue
                if not isinstance(record, dict) or record.get("key") != entry.name:
                    continue
                files, metadata = record.get("files"), record.get("metadata")
                if isinstance(files, list) and files and isinstance(metadata, dict):
                    found.append(ListedEntry(entry.name, created, metadata, len(files)))
        found.sort(key=lambda listed: (listed.created, listed.key), reverse=True)
        return found

    def derived(self, key: str, name: str, make: Callable[[StoredResult], bytes]) -> bytes | None:
        """A file made from an entry (a thumbnail), kept inside the entry so it is made once and
        leaves with it. None when there is no intact entry under `key`."""
        if not _DERIVED_PATTERN.fullmatch(name):
            raise ValueError("a derived file name is lowercase letters, digits and dashes with an extension")
        entry = self._entry_path(key)
        path = entry / name
        with suppress(OSError):
            return path.read_bytes()
        try:
            stored = _read_entry(entry, key)
        except (_Damaged, OSError):
            return None
        data = make(stored)
        temp = entry / f".{name}.{secrets.token_hex(4)}"
        try:
            temp.write_bytes(data)
            os.replace(temp, path)  # readers see the whole file or none
        except OSError as error:  # read-only store, or the entry was evicted meanwhile: still served
            log.info("result store: could not keep %s for entry %s (%s)", name, key[:12], error.strerror)
            with suppress(OSError):
                temp.unlink()
        return data

    def delete(self, key: str) -> bool:
        """Remove one entry (history's delete); False when there was none."""
        entry = self._entry_path(key)
        with self._lock():
            try:
                size, _ = _measure(entry)
            except (FileNotFoundError, NotADirectoryError):
                return False
            self._discard(entry)
            usage = self._read_usage()
            if usage is not None:
                self._write_usage(max(0, usage[0] - size), usage[1])
        return True

    # -- writing --------------------------------------------------------------------------

    def put(self, key: str, pngs: Sequence[bytes], metadata: Mapping) -> None:
        """Store atomically (readers see all of it or nothing); an intact entry under `key` is kept.

        Raises ValueError for a bad key, non-PNG data or metadata JSON cannot hold exactly."""
        entry = self._entry_path(key)
        # 1. Check everything before touching the disk.
        pngs = tuple(bytes(png) for png in pngs)
        if not pngs:
            raise ValueError("a result has at least one PNG")
        if not all(png.startswith(PNG_SIGNATURE) for png in pngs):
            raise ValueError("the result store only holds PNG data")
        files = [
            {"name": f"{index}.png", "size": len(png), "blake3": digest_bytes(png)} for index, png in enumerate(pngs)
        ]
        meta = _meta_bytes({"format": _ENTRY_FORMAT, "key": key, "files": files, "metadata": dict(metadata)})
        size = len(meta) + sum(len(png) for png in pngs)
        if size > self.max_bytes:
            log.info("result store: a %d-byte result is larger than the whole store; not stored", size)
            return
        if time.monotonic() - self._swept_at > SWEEP_EVERY_S:  # a long-lived server sweeps as it goes
            self._swept_at = time.monotonic()
            self.sweep_orphans()
        try:
            if _intact(entry, key):  # same key, same result: nothing to write
                _mark_used(entry / _META)
                return
            # 2. Write the whole entry where readers never look, durably.
            temp = self._temp / f"{key}.{os.getpid()}.{secrets.token_hex(4)}"
            temp.mkdir()
            try:
                for file, png in zip(files, pngs, strict=True):
                    _write_durably(temp / file["name"], png)
                _write_durably(temp / _META, meta)  # last: its presence means the rest is there
                _mark_used(temp / _META)
                _fsync_directory(temp)
                # 3. Publish it with one rename, then keep the store within its size.
                self._publish(temp, entry, key, size)
            finally:
                if temp.exists():
                    shutil.rmtree(temp, ignore_errors=True)
        except OSError as error:
            log.warning("result store: could not store entry %s (%s)", key[:12], error.strerror or error)
            self._degrade(error)
        else:
            self.problem = None

    def _degrade(self, error: OSError) -> None:
        """Results go on being served from memory; say why they are not kept (no path: /health is public)."""
        reason = error.strerror or type(error).__name__
        if self.problem is None:
            log.warning("result store: results are not kept (%s)", reason)
        self.problem = f"results are not kept: the result store cannot be written ({reason})"

    def _publish(self, temp: Path, entry: Path, key: str, size: int) -> None:
        with self._lock():
            usage = self._read_usage()
            total, puts = usage if usage is not None else (self._scan_total(), 0)
            # Counted before the rename: a crash in between over-counts, which only causes an early rescan.
            self._write_usage(total + size, puts + 1)
            entry.parent.mkdir(exist_ok=True)
            try:
                os.rename(temp, entry)
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # Another writer published this key first. Keep theirs unless it is damaged.
                if _intact(entry, key):
                    self._write_usage(total, puts)
                    return
                self._discard(entry)
                os.rename(temp, entry)
            _fsync_directory(entry.parent)
            if total + size > self.max_bytes or puts + 1 >= _RESCAN_EVERY:
                self._evict_locked()

    def _evict_locked(self) -> None:
        """Remove least recently used entries until the store fits; records the exact total."""
        entries = sorted(self._scan(), key=lambda usage: (usage.recency_ns, usage.key))
        total = sum(usage.size for usage in entries)
        for usage in entries:
            if total <= self.max_bytes:
                break
            self._discard(usage.path)
            total -= usage.size
        self._write_usage(total, 0)

    # -- maintenance ----------------------------------------------------------------------

    def sweep_orphans(self, older_than_s: float = 3600) -> int:
        """Remove unpublished writes (and half-deleted entries) left by killed processes."""
        cutoff = time.time() - older_than_s
        removed = 0
        try:
            leftovers = list(os.scandir(self._temp))
        except FileNotFoundError:
            return 0
        for leftover in leftovers:
            try:
                if leftover.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                if leftover.is_dir(follow_symlinks=False):
                    shutil.rmtree(leftover.path)
                else:
                    os.unlink(leftover.path)
                removed += 1
            except FileNotFoundError:
                continue  # another process swept it first
            except OSError as error:
                log.warning("result store: could not sweep a leftover write (%s)", error.strerror)
        return removed

    def clear(self) -> None:
        with self._lock():
            for usage in self._scan():
                self._discard(usage.path)
            self._write_usage(0, 0)

    # -- internals ------------------------------------------------------------------------

    def _entry_path(self, key: object) -> Path:
        key = _check_key(key)
        return self.root / key[:2] / key

    def _discard(self, entry: Path, identity: tuple[int, int] | None = None) -> None:
        """Unpublish `entry` in one rename (readers see it whole or gone), then delete it.

        With `identity`, only if the directory is still the one that was read: a writer may have
        replaced a damaged entry with a good one in the meantime.
        """
        trash = self._temp / f"trash.{secrets.token_hex(8)}"
        try:
            if identity is not None and _identity(entry) != identity:
                return
            os.rename(entry, trash)
        except FileNotFoundError:
            return
        except OSError as error:
            log.warning("result store: could not remove an entry (%s)", error.strerror)
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _scan(self) -> list[_EntryUsage]:
        found = []
        for shard in _subdirectories(self.root):
            if not _SHARD_PATTERN.fullmatch(shard.name):
                continue
            for entry in _subdirectories(shard.path):
                if not _KEY_PATTERN.fullmatch(entry.name):
                    continue
                try:
                    size, recency = _measure(Path(entry.path))
                except FileNotFoundError:
                    continue  # removed while scanning
                found.append(_EntryUsage(recency, entry.name, Path(entry.path), size))
        return found

    def _scan_total(self) -> int:
        return sum(usage.size for usage in self._scan())

    def _lock(self) -> FileLock:
        """The store's one lock, shared by every thread and process using the store: filelock's
        per-thread handles make it exclude threads of this process as well as other processes."""
        return FileLock(self.root / _LOCK_FILE)

    def _read_usage(self) -> tuple[int, int] | None:
        """The running total (bytes, puts since the last exact scan); None if unknown."""
        try:
            record = json.loads((self.root / _USAGE_FILE).read_bytes())
            total, puts = record["bytes"], record["puts"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not (type(total) is int and type(puts) is int and total >= 0 and puts >= 0):
            return None
        return total, puts

    def _write_usage(self, total: int, puts: int) -> None:
        # Written under the lock; a torn write is unparsable and just triggers a rescan.
        (self.root / _USAGE_FILE).write_bytes(canonical_json({"bytes": total, "puts": puts}))


def _meta_bytes(record: dict) -> bytes:
    # Round-trip first so the check is computed over exactly what a reader will parse
    # (tuples become lists, non-string keys become strings).
    record = json.loads(canonical_json(record))
    record["check"] = digest_bytes(canonical_json(record))
    return canonical_json(record)


def _read_entry(entry: Path, key: str) -> StoredResult:
    record = _read_meta(entry, key)
    files, metadata = record["files"], record["metadata"]
    pngs = []
    for index, file in enumerate(files):
        if not isinstance(file, dict) or file.get("name") != f"{index}.png":
            raise _Damaged("meta.json lists an unexpected file")
        try:
            png = (entry / file["name"]).read_bytes()
        except FileNotFoundError:
            raise _Damaged(f"{file['name']} is missing") from None
        if len(png) != file.get("size") or digest_bytes(png) != file.get("blake3"):
            raise _Damaged(f"{file['name']} does not match its digest")
        pngs.append(png)
    return StoredResult(tuple(pngs), metadata)


def _read_meta(entry: Path, key: str) -> dict:
    """The entry's meta.json, checked against its own digest (the PNGs are not read)."""
    try:
        record = json.loads((entry / _META).read_bytes())
    except FileNotFoundError:
        raise _Damaged("no meta.json") from None
    except ValueError:
        raise _Damaged("meta.json is not valid JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("check"), str):
        raise _Damaged("meta.json has no check digest")
    check = record.pop("check")
    if digest_bytes(canonical_json(record)) != check:
        raise _Damaged("meta.json does not match its check digest")
    if record.get("format") != _ENTRY_FORMAT or record.get("key") != key:
        raise _Damaged("meta.json belongs to another key or format")
    files, metadata = record.get("files"), record.get("metadata")
    if not isinstance(files, list) or not files or not isinstance(metadata, dict):
        raise _Damaged("meta.json lists no files")
    return record


def _intact(entry: Path, key: str) -> bool:
    try:
        _read_entry(entry, key)
    except (_Damaged, OSError):
        return False
    return True


def _identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _measure(entry: Path) -> tuple[int, int]:
    """(bytes of the entry's files, its last use in ns). Recency is meta.json's mtime."""
    size = 0
    recency = None
    for file in os.scandir(entry):
        status = file.stat(follow_symlinks=False)
        size += status.st_size
        if file.name == _META:
            recency = status.st_mtime_ns
    if recency is None:  # damaged: oldest first
        recency = 0
    return size, recency


def _subdirectories(path: Path | str) -> list[os.DirEntry]:
    try:
        return [entry for entry in os.scandir(path) if entry.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mark_used(meta: Path) -> None:
    # An explicit timestamp: the kernel's file clock is coarse (~4 ms), too coarse to order hits.
    now = time.time_ns()
    with suppress(OSError):  # a read-only store still serves hits; only its recency goes stale
        os.utime(meta, ns=(now, now))


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_directory(path: Path) -> None:
    """Make a directory's new names durable (POSIX; Windows cannot open directories)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = ["PNG_SIGNATURE", "ListedEntry", "ResultStore", "StoredResult"]
