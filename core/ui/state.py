"""The Streamlit wiring of the process-wide services and of finished results.

`st.cache_resource` hands every session the same Settings, Studio and JobQueue objects that
`core.services` holds for the REST API, so the pages and the API share one queue, one model pool
and one result store (the CLI runs a Studio of its own over the same store on disk). Nothing here loads a model: opening a page only builds the
catalogue and the (idle) queue.
"""

from __future__ import annotations

import logging
import os
import secrets

import streamlit as st

from core import secrets as core_secrets
from core import services
from core.clients import page_session
from core.jobs import JobQueue
from core.runner import Result, Studio
from core.settings import Settings
from core.ui import sessions

log = logging.getLogger(__name__)

# st.secrets name -> environment variable the core reads.
SECRET_ENVIRONMENT = {"HF_TOKEN": "HF_TOKEN", "api_key": "STUDIO_API_KEY", "page_password": "STUDIO_PAGE_PASSWORD"}


@st.cache_resource(show_spinner=False)
def export_secrets() -> tuple[str, ...]:
    """Copy Streamlit secrets into the environment once per process, never over a variable
    already set. No secrets file is fine; an unreadable one is reported (`core.secrets`), and the API
    then refuses requests. Returns the names copied (never the values)."""
    copied = []
    try:
        available = {name: st.secrets[name] for name in SECRET_ENVIRONMENT if name in st.secrets}
    except Exception as error:
        if getattr(error, "error_id", None) == "no-secrets-found":  # no secrets file anywhere: fine
            log.info("no Streamlit secrets to export")
            return ()
        # A file that is there but unreadable may hold the API key: fail closed, and say so.
        problem = f".streamlit/secrets.toml could not be read ({type(error).__name__}); fix it and restart the app"
        log.error("%s", problem)
        core_secrets.report_unreadable(problem)
        return ()
    for name, value in available.items():
        variable = SECRET_ENVIRONMENT[name]
        if isinstance(value, str) and value.strip() and not os.environ.get(variable):
            os.environ[variable] = value.strip()
            copied.append(variable)
    return tuple(copied)


def settings() -> Settings:
    """Read from the environment each time, exactly as core.services reads it (cheap: a few
    lookups), so the pages and the shared Studio never disagree."""
    return services.settings()


# `validate` keeps the cached object in step with core.services, so a services.reset() (tests,
# an operator changing the environment) is followed here instead of leaving a stale queue.
@st.cache_resource(show_spinner=False, validate=lambda cached: cached is services.studio())
def studio() -> Studio:
    export_secrets()
    return services.studio()


@st.cache_resource(show_spinner=False, validate=lambda cached: cached is services.queue())
def queue() -> JobQueue:
    export_secrets()
    return services.queue()


def session_id() -> str:
    """A stable id for this browser session: the queue's `session` (limits, reattaching, cancel). It
    carries the client's address: one address's tabs and API calls share one limit (core/clients.py)."""
    if "studio.session" not in st.session_state:
        st.session_state["studio.session"] = page_session(secrets.token_hex(8), st.context.ip_address)
    session = st.session_state["studio.session"]
    sessions.register(session)  # its jobs are kept while this browser session stays connected
    return session


@st.cache_data(show_spinner=False, max_entries=64)
def finished_result(key: str, _job_id: str) -> Result:
    """The result of a DONE job, kept by its request key (the same key always means the same
    pixels), so a page can show it again after the queue has dropped the job."""
    return queue().result(_job_id)


__all__ = ["export_secrets", "finished_result", "queue", "session_id", "settings", "studio"]
