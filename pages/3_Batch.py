"""Batch: many images with one mask, masks matched by file name, or a ZIP of both."""

from __future__ import annotations

import hashlib

import streamlit as st

from core.batch import (
    BatchItem,
    BatchRun,
    NamedFile,
    check_items,
    match_items,
    read_zip,
    results_zip,
    split_images_and_masks,
)
from core.requests import InpaintRequest, default
from core.ui import state
from core.ui.downloads import zip_download
from core.ui.errors import shown_errors
from core.ui.jobs import group_panel, group_table
from core.ui.models import model_picker
from core.ui.page import page_end, page_start
from core.ui.prompt_batch import prompt_batch_tab
from core.ui.sampling import sampling_controls
from core.ui.uploads import IMAGE_TYPES

RUN, CHECKED = "batch.run", "batch.checked-memo"
ONE_MASK, BY_NAME, ZIP = "One mask for all images", "Masks matched by file name", "A ZIP of images and masks"
GALLERY = 12  # result thumbnails shown on the page


def named(files) -> list[NamedFile]:
    return [NamedFile(file.name, file.getvalue()) for file in files or []]


def checked(items: list[BatchItem], limits) -> list[BatchItem]:
    """The items with every file decoded once (core.batch.check_items), kept while the inputs stay the
    same. New inputs clear a finished batch's results, so old results never sit next to new files."""
    hasher = hashlib.blake2b(digest_size=16)
    for item in items:
        for part in (item.name, item.problem or "", item.image.data, item.mask.data if item.mask else b""):
            hasher.update(part.encode() if isinstance(part, str) else part)
            hasher.update(b"\0")
    signature = hasher.hexdigest()
    memo = st.session_state.get(CHECKED)
    if memo is not None and memo[0] == signature:
        return memo[1]
    result = check_items(items, limits)
    st.session_state[CHECKED] = (signature, result)
    run = st.session_state.get(RUN)
    if run is not None and run.finished(state.queue()):
        st.session_state.pop(RUN, None)  # the inputs changed: the old results go
    return result


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
    inputs, setup = st.columns([3, 2], gap="medium")

    with inputs:
        source = st.radio(
            "Inputs", [ONE_MASK, BY_NAME, ZIP], horizontal=True, key="batch.source", persist_state="session"
        )
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
        items = checked(items, settings.image_limits)
        if items:
            refused = [item for item in items if item.problem is not None]
            st.markdown(
                f"**{len(items)} images** · {len(items) - len(refused)} ready"
                + (f" · :red[{len(refused)} will not run]" if refused else "")
            )
            if refused:
                st.dataframe(
                    {"file": [item.image.name for item in refused], "why": [item.problem for item in refused]},
                    hide_index=True,
                    width="stretch",
                )

    with setup:
        remove = (
            st.radio(
                "Mode", ["Remove", "Replace or regenerate"], horizontal=True, key="batch.mode", persist_state="session"
            )
            == "Remove"
        )
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
            prompt = st.text_area("Prompt", key="batch.prompt", height=80, persist_state="session")
            negative = st.text_input("Negative prompt", key="batch.negative", persist_state="session")
            with st.expander("Settings"):
                sampling = sampling_controls(spec, key="batch", strength=True)
        with st.expander("Mask options"):
            mask_blur = st.slider("Feather", 0, 64, default(InpaintRequest, "mask_blur"), key="batch.blur", persist_state="session")
            mask_grow = st.slider("Grow / shrink", -64, 64, default(InpaintRequest, "mask_grow"), key="batch.grow", persist_state="session")
            invert_mask = st.checkbox("Invert", key="batch.invert", persist_state="session")
            padding = st.slider("Padding", 0, 256, default(InpaintRequest, "padding"), step=8, key="batch.padding", persist_state="session")

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
            st.button(
                "Clear these results",
                icon=":material/clear_all:",
                on_click=lambda: st.session_state.pop(RUN, None),
                key="batch.clear",
            )

page_end()
