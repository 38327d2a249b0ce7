"""The Home page body: what the studio does, what can run here, links, and an offline "try it".

Home.py only calls `render_home()`, so importing Home.py (as `streamlit run` does once to find an
`st.App`) stays cheap: nothing here runs at import.
"""

from __future__ import annotations

import streamlit as st

from core import secrets as core_secrets
from core import services
from core.requests import InpaintRequest
from core.ui import state
from core.ui.compare import before_after
from core.ui.downloads import png_download
from core.ui.errors import shown_errors
from core.ui.jobs import job_result, lookup
from core.ui.models import TASK_NAMES, show_unavailable, split_by_availability
from core.ui.page import page_end, page_start
from core.ui.uploads import image_uploader

PAGES = (
    ("pages/1_Generate.py", "Generate", ":material/auto_awesome:", "Text to image: prompt, size, steps, seed."),
    ("pages/2_Inpaint.py", "Inpaint", ":material/brush:", "Paint over part of a photo; remove it or replace it."),
    ("pages/3_Batch.py", "Batch", ":material/photo_library:", "Many images and masks at once; results as a ZIP."),
    ("pages/4_Compare.py", "Compare", ":material/compare:", "The same input through 2-4 models, side by side."),
)
TRY_JOB = "home.try-job"
TRY_MODEL = "opencv-telea"


@st.cache_resource(show_spinner=False)
def _device_line() -> str:
    from core.devices import device_summary  # imports torch only where a GPU driver exists

    try:
        return device_summary(state.settings().device)
    except Exception as error:  # a bad STUDIO_DEVICE must not take the home page down
        return f"unavailable ({error})"


def render_home() -> None:
    page_start(
        "Canvas Studio",
        ":material/palette:",
        "Generate images from a prompt; edit any region of a photo (paint over it, then remove it or replace it "
        "from a prompt). Local models run here, hosted ones on Hugging Face, all through one shared queue; "
        "every PNG carries its settings.",
        page_title="Canvas Studio",
    )
    state.export_secrets()
    if core_secrets.unreadable():
        st.error(f"The REST API is refusing requests: {core_secrets.unreadable()}.", icon=":material/key_off:")
    for problem in _storage_problems():  # what /health says too: the app works, but keeps less than it should
        st.warning(problem[0].upper() + problem[1:] + ".", icon=":material/save:")
    _try_it()  # first: the demo and its result sit in view on a laptop and on a phone
    st.divider()
    links, models = st.columns([2, 3], gap="large")
    with links:
        st.subheader("Start")
        for path, label, icon, blurb in PAGES:
            st.page_link(path, label=label, icon=icon, help=blurb)
        st.caption(f"Device: **{_device_line()}**")
        st.caption(_queue_line())
    with models:
        _models_table()
    page_end()


def _storage_problems() -> list[str]:
    """Why results or jobs are not being kept (an unwritable or full STUDIO_CACHE_DIR), if they are not."""
    state.queue()  # built first: a job store that could not be opened is known only then
    store = state.studio().store
    found = [store.problem if store is not None else None, services.job_store_problem()]
    return [problem for problem in found if problem]


def _queue_line() -> str:
    """Workers alive and jobs waiting, on every front-end of this job store."""
    queue = state.queue()
    workers, waiting = queue.workers_alive(), queue.queue_length()
    backend = {"sqlite": "this machine's job store", "redis": "the shared Redis job store"}.get(
        queue.store.kind, queue.store.kind
    )
    worker_text = (
        "no worker: jobs wait until one starts (`python -m core worker`)"
        if workers == 0
        else (f"**{workers}** worker{'s' if workers != 1 else ''}")
    )
    return f"Queue: {worker_text} · **{waiting}** job{'s' if waiting != 1 else ''} waiting · {backend}"


def _models_table() -> None:
    catalogue = state.studio().catalogue
    ready, missing = split_by_availability(list(catalogue))
    st.subheader("Models on this machine")
    st.caption(f"{len(ready)} of {len(catalogue)} models can run now, offline; none is loaded until you run something.")
    for spec in ready:
        tasks = ", ".join(TASK_NAMES.get(task, task) for task in spec.tasks)
        st.markdown(f":material/check_circle: **{spec.name}** · {tasks}")
    show_unavailable(missing)


def _try_it() -> None:
    sample_column, upload_column = st.columns([3, 2], gap="large")
    with sample_column:
        st.subheader("Try it (works offline)")
        st.markdown("Remove the watermark from the sample photo with the built-in OpenCV engine.")
        job_id = st.session_state.get(TRY_JOB)
        status = lookup(job_id) if job_id else None
        busy = status is not None and not status.state.finished
        if st.button("Remove the watermark", icon=":material/auto_fix_high:", type="primary", disabled=busy):
            with shown_errors():
                from core.ui.sample import watermarked_sample

                image, mask = watermarked_sample()
                request = InpaintRequest(model=TRY_MODEL, image=image, mask=mask, mask_grow=3, mask_blur=2)
                st.session_state[TRY_JOB] = state.queue().submit(
                    request, session=state.session_id(), label="home sample", heartbeat=True
                )
                st.rerun()
        if TRY_JOB in st.session_state:  # the progress and the result right under the button
            result = job_result(st.session_state[TRY_JOB], key="home.try")
            if result is not None:
                from core.ui.sample import watermarked_sample

                before_after(
                    watermarked_sample()[0],
                    result.images[0],
                    key="home.compare",
                    labels=("Watermarked", "Removed"),
                    reveal=True,
                )
                png_download(result.pngs[0], "canvas-studio-sample.png", key="home.download")
    with upload_column:
        st.subheader("Your photo")
        st.markdown("Bring your own photo to the Inpaint page and paint over what should go.")
        upload = image_uploader("Your photo", key="home.upload", limits=state.settings().image_limits)
        if upload is not None and st.button("Open it in Inpaint", icon=":material/brush:"):
            st.session_state["inpaint.source"] = upload
            st.switch_page("pages/2_Inpaint.py")


__all__ = ["PAGES", "render_home"]
