"""Compare: the same prompt and seed (or the same image and mask) through 2-4 models."""

from __future__ import annotations

import secrets

import streamlit as st

from core.batch import ItemView
from core.jobs import JobState
from core.requests import MAX_STEPS, GenerateRequest, InpaintRequest, random_seed
from core.ui import state
from core.ui.compare import before_after
from core.ui.downloads import png_download, result_file_name
from core.ui.errors import shown_errors
from core.ui.jobs import group_panel, lookup
from core.ui.mask_editor import MaskOptions, PhotoScale, mask_editor, mask_options, mask_preview
from core.ui.models import multi_model_picker
from core.ui.page import page_end, page_start
from core.ui.prompts import prompt_length_warning
from core.ui.sampling import seed_input
from core.ui.sizes import presets
from core.ui.uploads import image_uploader
from core.ui.xy_grid import xy_grid_page

RUN = "compare.run"  # {"group": str, "jobs": [(model name, job id)]}
TEXT, EDIT = "Text to image", "Inpainting"
MAX_MODELS = 4
MODELS, GRID = "Models side by side", "X/Y grid"


def views(jobs: list[tuple[str, str]]) -> list[ItemView]:
    return [ItemView(name, lookup(job_id), None, False) for name, job_id in jobs]


def cancel(jobs: list[tuple[str, str]]) -> None:
    queue, session = state.queue(), state.session_id()
    for _, job_id in jobs:
        try:
            queue.cancel(job_id, session=session)
        except KeyError:
            continue


page_start(
    "Compare models",
    ":material/compare:",
    "One input, several models, side by side, with each model's time and settings. Results already made come from the cache.",
    page_title="Compare · Canvas Studio",
)

mode_column, task_column = st.columns(2)
if mode_column.radio("Compare", [MODELS, GRID], horizontal=True, key="compare.mode", persist_state="session") == GRID:
    xy_grid_page(key="grid")
    page_end()
    st.stop()

settings, studio = state.settings(), state.studio()
task = task_column.radio("Task", [TEXT, EDIT], horizontal=True, key="compare.task", persist_state="session")
core_task = "txt2img" if task == TEXT else "inpaint"
specs = multi_model_picker(studio.catalogue, core_task, key=f"compare.models.{core_task}", max_models=MAX_MODELS)
if len(specs) < 2:
    st.info("Pick at least two models to compare.", icon=":material/compare:")

prompt = negative = ""
seed = steps = size = None
prompted = [spec for spec in specs if spec.generative]  # models that read a prompt and a seed
run = st.session_state.get(RUN)
running = run is not None and any(
    (status := lookup(job_id)) is not None and not status.state.finished for _, job_id in run["jobs"]
)
inputs_column, run_column = st.columns([3, 2], gap="medium")

with inputs_column:
    source = drawing = None
    options = MaskOptions()
    if task == EDIT:
        source = image_uploader("Photo", key="compare.upload", limits=settings.image_limits)
        if source is not None:
            drawing = mask_editor(source.image, source.digest, key="compare")
    if task == TEXT or prompted:
        prompt = st.text_area("Prompt", key="compare.prompt", height=80, persist_state="session")
        negative = st.text_input("Negative prompt", key="compare.negative", persist_state="session")
        if prompted:
            prompt_length_warning(studio, prompted[0], prompt)

with run_column, st.container(key="sticky-compare-run"):
    with st.expander("Settings (the same for every model)"):
        if task == TEXT or prompted:
            seed = seed_input(key="compare")
            if prompted and st.toggle(
                "Same steps for every model",
                key="compare.same-steps",
                help="Off: each model runs its own default number of steps.",
                persist_state="session",
            ):
                steps = st.slider(
                    "Steps", 1, MAX_STEPS, prompted[0].default_steps, key="compare.steps", persist_state="session"
                )
        if task == TEXT and specs:
            sizes = presets(specs[0])
            size = sizes[st.selectbox("Size", list(sizes), key="compare.size", persist_state="session")]
        if source is not None:
            options = mask_options(PhotoScale.of(source.image.size), key="compare")
            if drawing is not None:  # exactly the mask every model gets: the same drawing, the same options
                mask_preview(source.image, drawing, options, key="compare")
    ready = len(specs) >= 2 and (task == TEXT or (drawing is not None and drawing.mask.getbbox() is not None))
    if st.button(
        "Run all",
        type="primary",
        icon=":material/play_arrow:",
        disabled=not ready or running,
        help="Running: wait for the results or cancel them below." if running else None,
        width="stretch",
    ):
        with shown_errors():
            seed = random_seed() if seed is None else seed  # drawn once: every model gets the same
            common = {"prompt": prompt, "negative_prompt": negative, "seed": seed}
            if steps is not None:
                common["num_inference_steps"] = steps
            if task == TEXT:
                if size is not None:
                    common["width"], common["height"] = size
                requests = [GenerateRequest(model=spec.id, **common) for spec in specs]
            else:
                requests = [
                    InpaintRequest(
                        model=spec.id,
                        image=source.image,
                        mask=drawing.mask,
                        mask_blur=options.mask_blur,
                        mask_grow=options.mask_grow,
                        invert_mask=options.invert_mask,
                        **{**common, **({} if spec.generative else {"num_inference_steps": None})},
                    )
                    for spec in specs
                ]
            for request in requests:
                studio.prepare(request)  # every request is checked before any is queued: all run, or none
            jobs, group = [], "compare-" + secrets.token_hex(6)
            for spec, request in zip(specs, requests, strict=True):
                job_id = state.queue().submit(
                    request, session=state.session_id(), label=spec.name, group=group, heartbeat=True
                )
                jobs.append((spec.name, job_id))
            st.session_state[RUN] = {"group": group, "jobs": jobs, "seed": seed if prompted or task == TEXT else None}
            st.rerun()
    if run is not None and running:
        group_panel(key="compare.group", poll=lambda: views(run["jobs"]), cancel=lambda: cancel(run["jobs"]))
    elif run is not None:  # the results, slid against each other right under Run all
        shown = []
        for name, job_id in run["jobs"]:
            status = lookup(job_id)
            if status is not None and status.state is JobState.DONE:
                shown.append((name, state.finished_result(status.key, status.id)))
        if len(shown) >= 2:
            names = [name for name, _ in shown]
            left_column, right_column = st.columns(2)
            left = left_column.selectbox("Left", names, index=0, key="compare.left", persist_state="session")
            right = right_column.selectbox("Right", names, index=1, key="compare.right", persist_state="session")
            by_name = dict(shown)
            before_after(
                by_name[left].images[0],
                by_name[right].images[0],
                key="compare.slider",
                labels=(left, right),
                reveal=st.session_state.get("compare.revealed") != run["group"],
            )
            st.session_state["compare.revealed"] = run["group"]

run = st.session_state.get(RUN)
if run is not None:
    jobs = run["jobs"]
    if not running:
        if run["seed"] is not None:
            st.markdown(f"Same input for every model · seed **{run['seed']}**")
        st.subheader("Each model")
        columns = st.columns(len(jobs))
        for column, (name, job_id) in zip(columns, jobs, strict=True):
            with column:
                st.markdown(f"**{name}**")
                status = lookup(job_id)
                if status is None or status.state is not JobState.DONE:
                    st.warning(
                        status.error if status is not None and status.error else "no result (cancelled or failed)"
                    )
                    continue
                result = state.finished_result(status.key, status.id)
                st.image(result.pngs[0], width="stretch")
                st.caption(
                    "From the cache (made earlier; nothing ran)" if status.cached else f"{status.elapsed_s:.1f} s"
                )
                png_download(result.pngs[0], result_file_name(result), key=f"compare.download.{job_id}")
                with st.expander("Parameters"):
                    st.json(result.parameters, expanded=False)

page_end()
