"""Which browser sessions are still connected, told to the job queue.

A page's job is abandoned only when its browser session is gone (websocket closed) for the
operator's window (`STUDIO_ABANDON_AFTER_S`), never because the page is hidden, switched or in a
background tab: this process touches, every few seconds, the jobs of every session whose
websocket is open, whatever the page is doing. Sessions on another front-end are that front-end's
business; a front-end that dies stops touching, so its sessions' page jobs are abandoned too.
"""

from __future__ import annotations

import logging
import threading

from core import services

log = logging.getLogger(__name__)

_lock = threading.Lock()
_sessions: dict[str, str] = {}  # queue session -> Streamlit session id
_reaper: threading.Thread | None = None


def register(queue_session: str) -> None:
    """Called from a running page: this queue session belongs to the current browser session."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    if context is None:
        return
    global _reaper
    with _lock:
        _sessions[queue_session] = context.session_id
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reap, name="studio-session-reaper", daemon=True)
            _reaper.start()


def connected() -> list[str]:
    """Queue sessions whose browser is connected now (none where no Streamlit server runs)."""
    from streamlit import runtime

    if not runtime.exists():
        return []
    live = runtime.get_instance()
    with _lock:
        gone = [name for name, session in _sessions.items() if not live.is_active_session(session)]
        for name in gone:
            del _sessions[name]
        return list(_sessions)


def _reap() -> None:
    while True:
        interval = max(0.5, services.settings().abandon_after_s / 4)
        threading.Event().wait(interval)
        try:
            services.queue().touch_sessions(connected())
        except Exception:  # the reaper must outlive a store hiccup
            log.exception("could not tell the job queue which sessions are connected")
