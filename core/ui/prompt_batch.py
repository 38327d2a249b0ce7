"""The Batch page's "Prompts" tab: many prompts times N seeds through the queue as one group.

Prompts come typed (one a line) or from a .txt / .csv file (core/prompt_batch.py reads both);
the run feeds the queue a few jobs at a time, shows results as they arrive, and downloads as a
ZIP with a manifest.csv of every item's parameters and outcome.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from core.batch import ItemView, RequestRun
from core.prompt_batch import DEFAULT_SEEDS, MAX_SEEDS, batch_zip, expand, read_prompts
from core.requests import GenerateRequest, random_seed
from core.ui import state
from core.ui.downloads import zip_download
from core.ui.errors import shown_errors
from core.ui.jobs import group_panel, group_table
from core.ui.models import model_picker
from core.ui.sampling import sampling_controls
from core.ui.sizes import presets

GALLERY = 24  # results shown on the page; the ZIP holds them all
THUMB_WIDTH = 150


def prompt_batch_tab(*, key: str = "prompts") -> None:
    settings, studio = state.settings(), state.studio()
    queue, session = state.queue(), state.session_id()
    source, setup = st.columns([3, 2], gap="large")
    rows = []
    with source:
        typed = st.text_area(
            "Prompts, one per line",
            key=f"{key}.text",
            height=160,
            placeholder="a lighthouse at dawn, oil painting\na red fox in the snow, watercolour",
        )
        upload = st.file_uploader(
            "…or a .txt or .csv file",
            type=["txt", "csv"],
            key=f"{key}.file",
            help="CSV: a header row with prompt and optionally negative_prompt, seed, model, width, height, steps.",
        )
        with shown_errors():
            if upload is not None:
                rows = read_prompts(upload.getvalue(), name=upload.name)
            elif typed.strip():
                rows = read_prompts(typed)
        refused = [row for row in rows if row.problem is not None]
        for row in refused[:5]:
            st.caption(f"Line {row.line} will not run: {row.problem}")
    with setup:
        spec = model_picker(studio.catalogue, "txt2img", key=f"{key}.model")
        negative = st.text_input("Negative prompt", key=f"{key}.negative", help="Rows of a CSV may set their own.")
        seeds = st.number_input("Seeds per prompt", 1, MAX_SEEDS, DEFAULT_SEEDS, key=f"{key}.seeds")
        if spec is not None:
            sizes = presets(spec)
            size_label = st.selectbox("Size", list(sizes), key=f"{key}.size.{spec.id}")
            with st.expander("Settings"):
                sampling = sampling_controls(spec, key=key, scheduler=True)
        if rows:
            st.caption(f"{len(rows)} prompts × {seeds} seeds = {len(rows) * seeds} images.")
        run: RequestRun | None = st.session_state.get(f"{key}.run")
        running = run is not None and not run.finished(queue)
        if st.button(
            "Run prompts",
            type="primary",
            icon=":material/play_arrow:",
            key=f"{key}.start",
            disabled=spec is None or not rows or running,
        ):
            with shown_errors():
                fields = sampling.request_fields(strength=False)
                fields["seed"] = (
                    random_seed() if fields["seed"] is None else fields["seed"]
                )  # one draw, shown per image
                width, height = sizes[size_label]
                template = GenerateRequest(
                    model=spec.id, negative_prompt=negative, width=width, height=height, **fields
                )
                st.session_state[f"{key}.run"] = RequestRun(expand(rows, template, seeds=int(seeds)), kind="prompts")
                st.rerun()

    run = st.session_state.get(f"{key}.run")
    if run is None:
        return
    st.subheader("Progress")

    def poll() -> list[ItemView]:
        run.submit_more(queue, session, in_flight=settings.max_jobs_per_session)
        return run.views(queue)

    def arrived(views: Sequence[ItemView]) -> None:
        _gallery(run)

    if group_panel(key=f"{key}.group", poll=poll, cancel=lambda: run.cancel(queue, session), live=arrived):
        group_table(run.views(queue))
        results, problems = run.results(), dict(run.problems())
        st.caption(f"{len(results)} done, {len(problems)} without a result.")
        _gallery(run)
        if results or problems:
            with shown_errors():
                zip_download(
                    batch_zip(run.items, problems),
                    "canvas-studio-prompts.zip",
                    key=f"{key}.download",
                    label=f"Download {len(results)} images + manifest.csv (ZIP)",
                )


def _gallery(run: RequestRun) -> None:
    done = [item for item in run.items if item.png is not None]
    if not done:
        return
    shown = done[:GALLERY]
    st.image(
        [item.png for item in shown],
        caption=[f"{item.name} · {item.request.prompt[:40]}" for item in shown],
        width=THUMB_WIDTH,
    )
    if len(done) > GALLERY:
        st.caption(f"The first {GALLERY} of {len(done)} images; the ZIP holds them all.")


__all__ = ["prompt_batch_tab"]
