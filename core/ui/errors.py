"""How a page shows a failure: the core's own message for user errors, one friendly line otherwise."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from core.errors import StudioError

log = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong on our side; the details are in the server log. Please try again."


def show_error(error: BaseException) -> None:
    if isinstance(error, StudioError):
        st.error(error.message, icon=":material/error:")
    else:
        log.error("unexpected error in a page", exc_info=error)
        st.error(UNEXPECTED, icon=":material/error:")


@contextmanager
def shown_errors() -> Iterator[None]:
    """Run a block; any exception ends the block and is shown (never as a traceback)."""
    try:
        yield
    except Exception as error:  # a page must never show a traceback
        show_error(error)


__all__ = ["UNEXPECTED", "show_error", "shown_errors"]
