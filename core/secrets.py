"""Where secrets come from: the environment, only.

Inside Streamlit, `core/ui/state.py` copies `st.secrets["HF_TOKEN"]` into the environment at startup,
so this module (and everything else outside `core/ui`) never imports
streamlit. Secrets are returned to the code that sends them and never logged or put in a message.
"""

from __future__ import annotations

import os


def hf_token() -> str | None:
    """The Hugging Face token from `HF_TOKEN`, or None when it is unset or blank."""
    token = os.environ.get("HF_TOKEN", "").strip()
    return token or None
