"""Batch: many images with one mask, masks matched by file name, or a ZIP of both."""

from __future__ import annotations

import streamlit as st

from core.batch import BatchRun, NamedFile, match_items, read_zip, results_zip, split_images_and_masks
from core.requests import InpaintRequest
from core.ui import state
from core.ui.downloads import zip_download
from core.ui.errors import shown_errors
from core.ui.jobs import group_panel, group_table
from core.ui.models import model_picker
from core.ui.page import page_end, page_start
from core.ui.prompt_batch import prompt_batch_tab
from core.ui.sampling import sampling_controls
from core.ui.uploads import IMAGE_TYPES

RUN = "batch.run"
ONE_MASK, BY_NAME, ZIP = "One mask for all images", "Masks matched by file name", "A ZIP of images and masks"
GALLERY = 12  # result thumbnails shown on the page


def named(files) -> list[NamedFile]:
    return [NamedFile(file.name, file.getvalue()) for file in files or []]


page_start(
    "Batch",
    ":material/photo_library:",
    "The same edit on many images, or many prompts × seeds. Jobs go through the shared queue a few at a time; "
    "one bad file or row never stops the rest.",
)
images_tab, prompts_tab = st.tabs(["Images", "Prompts"])
with prompts_tab:
    prompt_batch_tab(key="prompts")

with images_tab:
    settings, studio = state.settings(), state.studio()
    best_remover = studio.catalogue.default_remove_model()  # LaMa when downloaded, else OpenCV
    inputs, setup = st.columns([3, 2], gap="large")

    with inputs:
        source = st.radio("Inputs", [ONE_MASK, BY_NAME, ZIP], horizontal=True, key="batch.source")
        items, notes = [], []
        with shown_errors():
            if source == ZIP:
                archive = st.file_uploader(
                    "ZIP with images and masks (masks in a masks/ folder, or named like photo_mask.png)",
                    type=["zip"],
                    key="batch.zip",
                )
                if archive is not None:
                    files, notes = read_zip(archive.getvalue())
                    images, masks = split_images_and_masks(files)
                    items = match_items(images, masks)
            else:
                images = named(
                    st.file_uploader("Images", type=IMAGE_TYPES, accept_multiple_files=True, key="batch.images")
                )
                if source == ONE_MASK:
                    mask = st.file_uploader("Mask (white or painted = change)", type=IMAGE_TYPES, key="batch.mask")
                    if images and mask is not None:
                        items = match_items(images, shared_mask=NamedFile(mask.name, mask.getvalue()))
                else:
                    masks = named(
                        st.file_uploader(
                            "Masks (same file names as the images)",
                            type=IMAGE_TYPES,
                            accept_multiple_files=True,
                            key="batch.masks",
                        )
                    )
                    if images and masks:
                        items = match_items(images, masks)
        for note in notes:
            st.caption(note)
        if items:
            ready = sum(item.problem is None for item in items)
            st.caption(f"{len(items)} images, {ready} with a mask.")

    with setup:
        remove = st.radio("Mode", ["Remove", "Replace or regenerate"], horizontal=True, key="batch.mode") == "Remove"
        spec = model_picker(
            studio.catalogue,
            "inpaint",
            key="batch.remove-model" if remove else "batch.replace-model",
            keep=lambda spec: spec.generative != remove,
            prefer=lambda spec: spec.id == best_remover,
        )
        prompt = negative = ""
        sampling = None
        if spec is not None and not remove:
            prompt = st.text_area("Prompt", key="batch.prompt", height=80)
            negative = st.text_input("Negative prompt", key="batch.negative")
            with st.expander("Settings"):
                sampling = sampling_controls(spec, key="batch", strength=True)
        with st.expander("Mask options"):
            mask_blur = st.slider("Feather", 0, 64, 4, key="batch.blur")
            mask_grow = st.slider("Grow / shrink", -64, 64, 0, key="batch.grow")
            invert_mask = st.checkbox("Invert", key="batch.invert")
            padding = st.slider("Padding", 0, 256, 32, step=8, key="batch.padding")

        run: BatchRun | None = st.session_state.get(RUN)
        queue, session = state.queue(), state.session_id()
        running = run is not None and not run.finished(queue)
        runnable = [item for item in items if item.problem is None]
        if st.button(
            "Run batch", type="primary", icon=":material/play_arrow:", disabled=spec is None or not runnable or running
        ):
            with shown_errors():
                template = InpaintRequest(
                    model=spec.id,
                    prompt=prompt,
                    negative_prompt=negative,
                    mask_blur=mask_blur,
                    mask_grow=mask_grow,
                    invert_mask=invert_mask,
                    padding=padding,
                    **({} if sampling is None else sampling.request_fields(strength=True)),
                )
                st.session_state[RUN] = BatchRun(items, template, limits=settings.image_limits)
                st.rerun()

    run = st.session_state.get(RUN)
    if run is not None:
        st.subheader("Progress")
        in_flight = settings.max_jobs_per_session

        def poll():
            run.submit_more(queue, session, in_flight=in_flight)
            return run.views(queue)

        if group_panel(key="batch.group", poll=poll, cancel=lambda: run.cancel(queue, session)):
            group_table(run.views(queue))
            results, problems = run.results(), run.problems()
            st.caption(f"{len(results)} done, {len(problems)} without a result.")
            if results:
                shown = results[:GALLERY]
                st.image([png for _, png in shown], caption=[name for name, _ in shown], width=180)
                if len(results) > GALLERY:
                    st.caption(f"The first {GALLERY} of {len(results)} results; the ZIP holds them all.")
                zip_download(
                    results_zip(results, problems),
                    "canvas-studio-batch.zip",
                    key="batch.download",
                    label=f"Download {len(results)} results (ZIP)",
                )

page_end()
