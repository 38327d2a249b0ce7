"""Settings of the web server Streamlit starts that Streamlit itself does not expose.

uvicorn closes a connection after 5 idle seconds. A client that reuses its pooled connection at
that instant sends a request the server never reads: no answer, nothing logged (4 of 955 requests
under load). Servers behind proxies keep connections open longer than any client's idle reuse.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 120  # longer than the pools of browsers (~60-90 s), httpx/requests (5-unbounded s) and proxies (60 s)


def lengthen_keep_alive(seconds: int = KEEP_ALIVE_S) -> bool:
    """Give the uvicorn server that is importing this app a longer keep-alive; False when there is none.

    `streamlit run` hands uvicorn an import string ("Home:app"), so the app module is imported from
    inside `uvicorn.Config.load`, after the Config was built from Streamlit's fixed settings. Its
    HTTP protocols read `config.timeout_keep_alive` for each new connection, so setting it here
    applies to every connection the server accepts."""
    try:
        import uvicorn
    except ImportError:
        return False
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, uvicorn.Config):
            candidate.timeout_keep_alive = max(candidate.timeout_keep_alive, seconds)
            log.debug("uvicorn keep-alive set to %s s", candidate.timeout_keep_alive)
            return True
        frame = frame.f_back
    return False
