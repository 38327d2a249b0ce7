"""Canvas Studio: `streamlit run Home.py` serves the pages in pages/ and the REST API under /api/v1.

Importing this file must stay cheap: `streamlit run` imports it once to find `app`. The page body
is `core.ui.home.render_home`, run only when Streamlit runs this script.
"""

from contextlib import asynccontextmanager

import streamlit as st

from core.api import api_routes
from core.ui.home import render_home


@asynccontextmanager
async def _export_secrets_first(_app):
    from core.ui.state import export_secrets

    export_secrets()  # st.secrets["api_key"] protects the API before any page is opened
    yield


app = st.App("Home.py", routes=api_routes(), lifespan=_export_secrets_first)

if __name__ == "__main__":
    render_home()
