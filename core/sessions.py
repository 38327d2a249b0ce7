"""A small, bounded, expiring on-disk store of browser sessions' work, so a reload loses nothing.

A session is named by a random token (the pages put it in the URL). Its state is one JSON document
(settings, strokes, job ids, names) plus the images it refers to, stored once each by content digest.
Bounds are checked before writing: a session holds at most `max_session_bytes` of images (the oldest
image it no longer refers to goes first), the store keeps at most `max_sessions` sessions (least
recently saved dropped first), and a session not saved for `ttl_s` is gone. Tokens are checked
against a strict pattern, so a token from a URL never names a path outside the store. A store that
cannot be written (full disk, unwritable folder) keeps nothing and the pages go on.

This is deliberately separate from the job store: it keeps what a person was doing on a page, not
jobs; results themselves stay in the result store and are referred to by job id or key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{32,64}$")
STATE_FILE = "state.json"
MAX_STATE_BYTES = 2 * 1024 * 1024  # the JSON document: settings, strokes and ids, never pictures


def new_token() -> str:
    return secrets.token_urlsafe(18)


def valid_token(token: object) -> bool:
    return isinstance(token, str) and bool(_TOKEN.match(token))


class SessionStore:
    def __init__(
        self,
        root: Path,
        *,
        max_sessions: int = 200,
        max_session_bytes: int = 64 * 1024 * 1024,
        ttl_s: float = 7 * 24 * 3600,
    ):
        self.root = Path(root)
        self.max_sessions = max_sessions
        self.max_session_bytes = max_session_bytes
        self.ttl_s = ttl_s
        self.problem: str | None = None  # why the last write failed, if it did
        self._lock = threading.Lock()

    # -- state ---------------------------------------------------------------------------------

    def load(self, token: str) -> dict | None:
        """The session's last saved state, or None (unknown, expired or unreadable token)."""
        folder = self._folder(token)
        if folder is None:
            return None
        path = folder / STATE_FILE
        try:
            if time.time() - path.stat().st_mtime > self.ttl_s:
                self._remove(folder)
                return None
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("unreadable session state dropped")
            self._remove(folder)
            return None
        return state if isinstance(state, dict) else None

    def save(self, token: str, state: dict) -> bool:
        """Write the state (JSON-able); False when it is too large or the token is not valid. Images
        the state no longer refers to are dropped."""
        folder = self._folder(token)
        if folder is None:
            return False
        data = json.dumps(state, separators=(",", ":")).encode()
        if len(data) > MAX_STATE_BYTES:
            log.warning("session state of %d bytes not saved (at most %d)", len(data), MAX_STATE_BYTES)
            return False
        with self._lock:
            try:
                fresh = not folder.exists()
                folder.mkdir(parents=True, exist_ok=True)
                _write_atomically(folder / STATE_FILE, data)
                self._drop_unreferenced(folder, data)
                if fresh:
                    self._evict()
            except OSError as error:
                self._unwritable(error)
                return False
        return True

    # -- images --------------------------------------------------------------------------------

    def put_blob(self, token: str, data: bytes) -> str | None:
        """Store bytes for the session; their digest, or None when they do not fit its budget."""
        folder = self._folder(token)
        if folder is None or len(data) > self.max_session_bytes:
            return None
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        path = folder / "blobs" / digest
        with self._lock:
            try:
                if path.exists():
                    path.touch()
                    return digest
                path.parent.mkdir(parents=True, exist_ok=True)
                self._make_room(folder, len(data))
                _write_atomically(path, data)
            except OSError as error:
                self._unwritable(error)
                return None
        return digest

    def _unwritable(self, error: OSError) -> None:
        """The pages go on without keeping their work across reloads (an unwritable or full STUDIO_CACHE_DIR):
        said once in the log, not on every rerun."""
        if self.problem is None:
            log.warning("sessions are not kept across reloads: the session store cannot be written (%s)", error)
        self.problem = error.strerror or str(error)

    def get_blob(self, token: str, digest: str) -> bytes | None:
        folder = self._folder(token)
        if folder is None or not isinstance(digest, str) or not _DIGEST.match(digest):
            return None
        try:
            return (folder / "blobs" / digest).read_bytes()
        except OSError:
            return None

    # -- bounds --------------------------------------------------------------------------------

    def _folder(self, token: object) -> Path | None:
        return self.root / token if valid_token(token) else None

    def _make_room(self, folder: Path, incoming: int) -> None:
        blobs = sorted((folder / "blobs").iterdir(), key=lambda path: path.stat().st_mtime)
        total = sum(path.stat().st_size for path in blobs)
        while blobs and total + incoming > self.max_session_bytes:
            oldest = blobs.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)

    def _drop_unreferenced(self, folder: Path, state_bytes: bytes) -> None:
        blobs = folder / "blobs"
        if not blobs.is_dir():
            return
        text = state_bytes.decode()
        for path in blobs.iterdir():
            if path.name not in text and time.time() - path.stat().st_mtime > 60:
                path.unlink(missing_ok=True)  # a minute's grace: a blob is put before the state naming it

    def _evict(self) -> None:
        """Drop expired sessions, then the least recently saved beyond `max_sessions`."""
        sessions = []
        now = time.time()
        for folder in self.root.iterdir():
            try:
                saved = (folder / STATE_FILE).stat().st_mtime
            except OSError:
                saved = 0.0
            if now - saved > self.ttl_s:
                self._remove(folder)
            else:
                sessions.append((saved, folder))
        sessions.sort()
        for _, folder in sessions[: max(0, len(sessions) - self.max_sessions)]:
            self._remove(folder)

    def _remove(self, folder: Path) -> None:
        if folder.parent == self.root and valid_token(folder.name):
            shutil.rmtree(folder, ignore_errors=True)


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as output:
            output.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


__all__ = ["SessionStore", "new_token", "valid_token"]
