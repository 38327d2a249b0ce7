"""Where secrets come from: the environment, only.

Inside Streamlit, `core/ui/state.py` copies `st.secrets["HF_TOKEN"]` into the environment at startup,
so this module (and everything else outside `core/ui`) never imports
streamlit. Secrets are returned to the code that sends them and never logged or put in a message.

A secrets file that exists but cannot be read fails closed: `report_unreadable` records it, and the
API refuses every request but /health until the file is fixed (the key it may hold is unknown).
"""

from __future__ import annotations

import os

_unreadable: str | None = None


def report_unreadable(problem: str) -> None:
    """A secrets file exists but could not be read: `problem` is one line for the operator (no value)."""
    global _unreadable
    _unreadable = problem


def unreadable() -> str | None:
    """Why the secrets file could not be read, or None when there is none or it was read."""
    return _unreadable


def hf_token() -> str | None:
    """The Hugging Face token from `HF_TOKEN`, or None when it is unset or blank."""
    token = os.environ.get("HF_TOKEN", "").strip()
    return token or None
