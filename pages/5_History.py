"""History: every result in the store, newest first; open one to download, edit or restore its settings."""

from __future__ import annotations

import streamlit as st

from core.ui.history import history_page

st.set_page_config(page_title="History · Canvas Studio", page_icon=":material/history:", layout="wide")
st.title("History")
st.caption("Every result this studio has kept, with the settings that made it. Filter, open, reuse or delete.")
history_page()
