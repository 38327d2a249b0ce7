"""The job panel: a queued or running job's position, progress, ETA, live preview and Cancel.

The panel polls the job queue from a fragment (only the panel reruns, every `POLL_SECONDS`) and
reruns the whole page once
the job has finished, so the page shows the result (or the error) in its normal flow. A rerun, a
page switch or a second tab never starts a job again: pages keep job ids in session_state and
reattach here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

import streamlit as st

from core.batch import ItemView
from core.jobs import JobState, JobStatus, UnknownJobError
from core.runner import Result
from core.ui import state
from core.ui.errors import shown_errors
from core.ui.reveal import reveal

log = logging.getLogger(__name__)

POLL_SECONDS = 0.75


def describe_wait(seconds: float | None) -> str:
    """ "about 12 s", or "estimating…" before the queue has measured this kind of job."""
    if seconds is None:
        return "estimating…"
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.0f} min"


def progress_text(status: JobStatus) -> str:
    """One line for people, e.g. "step 3/20 · 4.1 s elapsed · about 9 s left"."""
    if status.state is JobState.QUEUED:
        wait = "estimating the wait…" if status.eta_s is None else f"done in {describe_wait(status.eta_s)}"
        return f"Waiting: position {status.position} in the queue · {wait}"
    if status.state is JobState.RUNNING:
        if status.cancel_requested:
            return "Cancelling: stops at the next step…"
        steps = f"step {status.step}/{status.total}" if status.total else "starting"
        left = "time left: estimating…" if status.eta_s is None else f"{describe_wait(status.eta_s)} left"
        return f"{steps} · {status.elapsed_s:.1f} s elapsed · {left}"
    if status.state is JobState.DONE:
        return "Served from the cache" if status.cached else f"Done in {status.elapsed_s:.1f} s"
    if status.state is JobState.FAILED:
        return f"Failed: {status.error}"
    return "Cancelled: nothing was kept from this job"


def _fraction(status: JobStatus) -> float:
    if status.state is JobState.DONE:
        return 1.0
    return min(1.0, status.step / status.total) if status.total else 0.0


def lookup(job_id: str) -> JobStatus | None:
    """The job's status, or None when the queue no longer knows it (finished long ago, or the
    app restarted)."""
    try:
        return state.queue().status(job_id)
    except UnknownJobError:
        return None


def _show_finished(status: JobStatus) -> None:
    """The line a finished job leaves on the page (the page shows the result itself)."""
    if status.state is JobState.FAILED:
        st.error(status.error or "the job failed", icon=":material/error:")
    elif status.state is JobState.CANCELLED:
        st.warning("Cancelled: nothing was kept from this job.", icon=":material/cancel:")
    else:
        st.caption(progress_text(status))


def job_panel(job_id: str, *, key: str) -> JobStatus | None:
    """Show the job until it finishes. Returns its status once finished (the page then shows the
    result or the error), None while it is still queued or running, or when it is unknown."""
    status = lookup(job_id)
    if status is None:
        st.warning("That job is no longer known to the studio (it may have restarted); run it again.")
        return None
    if status.state.finished:
        return status
    _live_job(job_id, key)
    return None


def job_result(job_id: str, *, key: str) -> Result | None:
    """The job's panel while it waits or runs, the line it leaves when it ends, and its result
    once done (None otherwise): what every page that runs one job shows."""
    status = job_panel(job_id, key=key)
    if status is None:
        return None
    _show_finished(status)
    if status.state is not JobState.DONE:
        return None
    with shown_errors():
        return state.finished_result(status.key, status.id)
    return None  # shown_errors showed why


@st.fragment(run_every=POLL_SECONDS)
def _live_job(job_id: str, key: str) -> None:
    queue = state.queue()
    try:
        status = queue.status(job_id)
    except UnknownJobError:
        st.rerun()
    if status.state.finished:
        st.rerun()  # the whole page: it now shows the result
    with st.container(border=True):
        st.progress(_fraction(status), text=progress_text(status))
        if status.state is JobState.RUNNING:
            preview = queue.preview(job_id)
            if preview is not None:
                st.image(preview, caption=f"Live preview, step {status.step}", width=256)
        st.button(
            "Cancel",
            key=f"{key}.cancel",
            icon=":material/cancel:",
            disabled=status.cancel_requested,
            on_click=_cancel,
            args=(job_id,),
        )
    reveal(job_id, key=f"{key}.reveal")  # on a phone the panel appears under Run, often below the fold


def _cancel(job_id: str) -> None:
    with contextlib.suppress(UnknownJobError):  # already gone: nothing to cancel
        state.queue().cancel(job_id, session=state.session_id())


# -- groups (batch, compare) ---------------------------------------------------------------------


def item_state(view: ItemView) -> tuple[str, str]:
    """(state, detail) of one item of a group, for its row in the table."""
    if view.status is not None:
        status = view.status
        if status.state is JobState.DONE:
            return ("done", "from the cache" if status.cached else f"{status.elapsed_s:.1f} s")
        if status.state is JobState.FAILED:
            return ("failed", status.error or "")
        if status.state is JobState.CANCELLED:
            return ("cancelled", "")
        return (status.state.value, progress_text(status))
    if view.problem is not None:
        return ("refused", view.problem)
    return ("waiting", "not queued yet" if view.waiting else "")


def group_table(views: Sequence[ItemView]) -> None:
    rows = [(view.name, *item_state(view)) for view in views]
    st.dataframe(
        {"item": [row[0] for row in rows], "state": [row[1] for row in rows], "detail": [row[2] for row in rows]},
        hide_index=True,
        width="stretch",
    )


def group_panel(
    *,
    key: str,
    poll: Callable[[], Sequence[ItemView]],
    cancel: Callable[[], None],
    live: Callable[[Sequence[ItemView]], None] | None = None,
) -> bool:
    """Show a group of jobs until all have finished; True once they have (the page then shows
    the results). `poll()` returns every item's view and may submit more jobs (the batch page
    feeds the queue from it); `cancel()` stops what has not finished; `live(views)`, if given,
    draws what has arrived so far under the progress (results appear as they finish)."""
    views = poll()
    if all(view.finished for view in views):
        return True
    _live_group(key, poll, cancel, live)
    return False


@st.fragment(run_every=POLL_SECONDS)
def _live_group(
    key: str,
    poll: Callable[[], Sequence[ItemView]],
    cancel: Callable[[], None],
    live: Callable[[Sequence[ItemView]], None] | None = None,
) -> None:
    views = poll()
    if all(view.finished for view in views):
        st.rerun()  # the whole page: it now shows the results
    finished = sum(view.finished for view in views)
    with st.container(border=True):
        st.progress(finished / len(views), text=f"{finished} of {len(views)} finished")
        running = next((v for v in views if v.status is not None and v.status.state is JobState.RUNNING), None)
        if running is not None:
            st.progress(_fraction(running.status), text=f"{running.name}: {progress_text(running.status)}")
        st.button(
            "Cancel the rest",
            key=f"{key}.cancel",
            icon=":material/cancel:",
            on_click=cancel,
            help="Stops what has not finished; finished results stay downloadable.",
        )
        group_table(views)
    first = next((view.status.id for view in views if view.status is not None), "")
    reveal(f"{key}:{first}", key=f"{key}.reveal")  # once per group (its first job), not per poll
    if live is not None:
        live(views)


__all__ = [
    "POLL_SECONDS",
    "describe_wait",
    "group_panel",
    "group_table",
    "item_state",
    "job_panel",
    "job_result",
    "lookup",
    "progress_text",
]
