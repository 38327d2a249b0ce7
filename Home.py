"""Canvas Studio: `streamlit run Home.py` serves the pages in pages/ and the REST API under /api/v1.

Importing this file must stay cheap: `streamlit run` imports it once to find `app`. The page body
is `core.ui.home.render_home`, run only when Streamlit runs this script.
"""

from contextlib import asynccontextmanager

import streamlit as st

from core.api import api_routes
from core.ui.home import render_home


@asynccontextmanager
async def _start(_app):
    from core import services
    from core.ui.state import export_secrets

    export_secrets()  # st.secrets["api_key"] protects the API before any page is opened
    services.queue()  # the workers start now: jobs queued before a restart run without waiting for a visit
    yield


app = st.App("Home.py", routes=api_routes(), lifespan=_start)

if __name__ == "__main__":
    render_home()
