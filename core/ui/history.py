"""The History page's widgets: filters, a thumbnail grid of every stored result, and one opened result
with its parameters, download, send to Inpaint, back to Generate with every setting, and delete."""

from __future__ import annotations

import json

import streamlit as st

from core import history
from core.history import TASK_NAMES, HistoryEntry
from core.ui import state
from core.ui.downloads import png_download
from core.ui.errors import shown_errors
from core.ui.restore import INPAINT_NOTES, NOTES, restore_generate, restore_inpaint
from core.ui.uploads import load_named

OPEN = "history.open"  # the key of the opened result
PAGE_SIZE = 24
COLUMNS = 4


@st.cache_data(show_spinner=False, max_entries=2048)
def _thumbnail(key: str, root: str, _store) -> bytes | None:
    """Read once per process (`root` keeps stores apart); the store keeps it on disk, made once per result."""
    return history.thumbnail(_store, key)


def history_page() -> None:
    store = state.studio().store
    if store is None:
        st.info("This studio keeps no results (no result store).")
        return
    entries = history.history(store)
    opened = st.session_state.get(OPEN)
    if opened is not None:
        entry = next((entry for entry in entries if entry.key == opened), None)
        if entry is None:
            st.session_state.pop(OPEN, None)
        else:
            _opened(entry)
            st.divider()
    text_column, model_column, task_column = st.columns([3, 2, 2])
    text = text_column.text_input("Search prompts", key="history.text", placeholder="fox, seed 42, sd-turbo…")
    models = model_column.multiselect("Model", sorted({entry.model for entry in entries}), key="history.models")
    tasks = task_column.multiselect(
        "Task",
        sorted({*TASK_NAMES, *(entry.task for entry in entries if entry.task)}),
        format_func=lambda task: TASK_NAMES.get(task, task.capitalize()),
        key="history.tasks",
    )
    shown = history.filtered(entries, text=text, models=models, tasks=tasks)
    if not entries:
        st.info("No results yet: what you generate or edit appears here.", icon=":material/history:")
        return
    st.caption(f"{len(shown)} of {len(entries)} results, newest first.")
    pages = max(1, -(-len(shown) // PAGE_SIZE))
    page = st.number_input("Page", 1, pages, 1, key="history.page") if pages > 1 else 1
    start = (int(page) - 1) * PAGE_SIZE
    _grid(shown[start : start + PAGE_SIZE], store)


def _grid(entries: list[HistoryEntry], store) -> None:
    for row_start in range(0, len(entries), COLUMNS):
        columns = st.columns(COLUMNS)
        for column, entry in zip(columns, entries[row_start : row_start + COLUMNS], strict=False):
            with column, st.container(border=True):
                thumbnail = _thumbnail(entry.key, str(store.root), store)
                if thumbnail is not None:
                    st.image(thumbnail, width="stretch")
                st.caption(entry.caption())
                st.button(
                    "Open",
                    key=f"history.open.{entry.key}",
                    icon=":material/open_in_full:",
                    on_click=_open,
                    args=(entry.key,),
                )


def _open(key: str) -> None:
    st.session_state[OPEN] = key


def _opened(entry: HistoryEntry) -> None:
    store = state.studio().store
    pngs = history.pngs(store, entry.key)
    if not pngs:
        st.warning("This result is no longer in the store.")
        return
    picture, details = st.columns([3, 2], gap="large")
    with picture:
        for index, png in enumerate(pngs):
            st.image(png, width="stretch")
            name = f"canvas-studio-{entry.task or 'image'}-{entry.model}-{entry.parameters.get('seed', 0)}"
            png_download(
                png, f"{name}{'-' + str(index + 1) if len(pngs) > 1 else ''}.png", key=f"history.download.{index}"
            )
        if entry.region is not None:
            st.caption("An edit keeps only the region it changed; this is that region.")
    with details:
        st.markdown(f"**{TASK_NAMES.get(entry.task, entry.task)}** · `{entry.model}` · {entry.when}")
        st.code(json.dumps(entry.parameters, indent=2, sort_keys=True), language="json", height=260)
        generate, inpaint, delete, close = st.columns(4)
        if entry.task == "txt2img" and generate.button(
            "Generate",
            icon=":material/replay:",
            key="history.to-generate",
            help="Back to Generate with every setting restored",
        ):
            notes = restore_generate(entry.parameters, state.studio().catalogue)
            st.session_state[NOTES] = ["Settings restored from the history.", *notes]
            st.switch_page("pages/1_Generate.py")
        if inpaint.button(
            "Inpaint", icon=":material/brush:", key="history.to-inpaint", help="Edit this image on Inpaint"
        ):
            with shown_errors():
                source = load_named(f"{entry.key[:12]}.png", pngs[0], state.settings().image_limits)
                st.session_state["inpaint.source"] = source
                st.session_state.pop("inpaint.job", None)
                if entry.task == "inpaint":  # an edit: its settings too, to edit again the same way
                    notes = restore_inpaint(entry.parameters, state.studio().catalogue, source.image.size)
                    st.session_state[INPAINT_NOTES] = ["Settings restored from the history.", *notes]
                st.switch_page("pages/2_Inpaint.py")
        if delete.button("Delete", icon=":material/delete:", key="history.delete"):
            store.delete(entry.key)
            _thumbnail.clear()
            st.session_state.pop(OPEN, None)
            st.toast("Deleted.")
            st.rerun()
        if close.button("Close", icon=":material/close:", key="history.close"):
            st.session_state.pop(OPEN, None)
            st.rerun()


__all__ = ["history_page"]
