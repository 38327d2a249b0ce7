"""Canvas Studio: `streamlit run Home.py` serves the pages in pages/ and the REST API under /api/v1.

Importing this file must stay cheap: `streamlit run` imports it once to find `app`. The page body
is `core.ui.home.render_home`, run only when Streamlit runs this script.
"""

import asyncio
import os
import sys
from contextlib import asynccontextmanager

import streamlit as st

from core.api import api_routes
from core.ui.home import render_home
from core.ui.server import lengthen_keep_alive


@asynccontextmanager
async def _start(_app):
    from core import priority, services
    from core.errors import StudioError
    from core.ui.state import export_secrets

    try:
        services.settings()
        export_secrets()  # st.secrets["api_key"] protects the API before any page is opened
        priority.enable()  # heavy work in threads yields the cores to this event loop (core/priority.py)
        services.queue()  # the workers start now: jobs queued before a restart run without waiting for a visit
    except StudioError as error:  # a bad STUDIO_* variable or catalogue entry stops start-up, in one line naming it
        print(f"error: {error}", file=sys.stderr, flush=True)
        os._exit(2)  # before serving anything; an exception here would be a traceback, then a half-started server
    yield
    queue = services.current_queue()
    if queue is not None:  # stopping (Ctrl-C, SIGTERM): a running job goes back to the queue, no attempt counted
        await asyncio.to_thread(queue.shutdown)


app = st.App("Home.py", routes=api_routes(), lifespan=_start)
lengthen_keep_alive()  # uvicorn is importing this file: its idle connections stay open 120 s, not 5

if __name__ == "__main__":
    render_home()
