"""Inpaint: paint over part of a photo, then remove it or replace it from a prompt.

Layout: the photo and its mask editor on the left; on the right everything about the run, top to
bottom: how (mode, model, prompt, options), Run, the progress panel, then the result as a before/after
view, so Run, progress and result stay together in view. Rounds (original -> round 1 -> ...) sit
under the editor: any round can go back on the canvas, and results compare with the true original.
"""

from __future__ import annotations

import contextlib
from pathlib import PurePath

import streamlit as st

from core.jobs import JobState
from core.requests import InpaintRequest, default, random_seed
from core.ui import state
from core.ui.compare import before_after
from core.ui.downloads import png_download
from core.ui.errors import shown_errors
from core.ui.extend import extend_chosen, extend_panel
from core.ui.jobs import group_panel, job_result, lookup
from core.ui.mask_editor import PhotoScale, mask_editor, mask_options, mask_preview
from core.ui.models import model_picker
from core.ui.page import page_end, page_start
from core.ui.prompts import prompt_length_warning
from core.ui.restore import INPAINT_NOTES, show_notes
from core.ui.sampling import decoder_choice, reuse_seed_button, sampling_controls
from core.ui.select import click_select, current_selection
from core.ui.uploads import LoadedImage, image_uploader, load_named

SOURCE, JOB, JOBS, JOB_SOURCE = "inpaint.source", "inpaint.job", "inpaint.jobs", "inpaint.job-source"
ROUNDS, UPLOAD_SEEN, PICK = "inpaint.rounds", "inpaint.upload-seen", "inpaint.pick"
REMOVE, REPLACE = "Remove", "Replace or regenerate"
MAX_VARIATIONS = 4


def rounds() -> list[LoadedImage]:
    """The photo's rounds, the original first; a photo that arrived from elsewhere starts a new list."""
    source = st.session_state.get(SOURCE)
    kept = st.session_state.get(ROUNDS) or []
    if source is not None and source.digest not in [image.digest for image in kept]:
        kept = [source]
        st.session_state[ROUNDS] = kept
    return kept


def round_of(image: LoadedImage) -> int:
    return next((index for index, kept in enumerate(rounds()) if kept.digest == image.digest), 0)


def file_stem() -> str:
    return PurePath(rounds()[0].name).stem or "photo"


def result_name(round_number: int, model: str, variation: int | None) -> str:
    """e.g. "beach-round2-opencv-telea.png": the source's name, the round the result makes, the model."""
    extra = f"-v{variation + 1}" if variation is not None else ""
    return f"{file_stem()}-round{round_number}-{model}{extra}.png"


def keep_as_round(name: str, png: bytes) -> None:
    """The result becomes the next round (later rounds of a branch stepped back from are dropped)."""
    image = load_named(name, png, state.settings().image_limits)
    kept = rounds()
    base = round_of(st.session_state[JOB_SOURCE]) if JOB_SOURCE in st.session_state else len(kept) - 1
    st.session_state[ROUNDS] = [*kept[: base + 1], image]
    st.session_state[SOURCE] = image
    for name in (JOB, JOBS, JOB_SOURCE, PICK):
        st.session_state.pop(name, None)


def show_round(index: int) -> None:
    st.session_state[SOURCE] = rounds()[index]


def start_over() -> None:
    for name in (SOURCE, ROUNDS, JOB, JOBS, JOB_SOURCE, PICK):
        st.session_state.pop(name, None)


def cancel_all(job_ids: list[str]) -> None:
    queue, session = state.queue(), state.session_id()
    for job_id in job_ids:
        with contextlib.suppress(KeyError):
            queue.cancel(job_id, session=session)


page_start("Inpaint", ":material/brush:")
show_notes(INPAINT_NOTES)
settings, studio = state.settings(), state.studio()
best_remover = studio.catalogue.default_remove_model()  # LaMa when downloaded, else OpenCV
best_replacer = studio.catalogue.default_generative_model("inpaint")  # hosted on a GPU-less host with a token

# 1. The photo: a new upload, or the image sent from Generate / Home / a previous round.
source: LoadedImage | None = st.session_state.get(SOURCE)
if source is None:
    upload = image_uploader("Photo (JPEG, PNG or WebP)", key="inpaint.upload", limits=settings.image_limits)
else:
    with st.expander(f"Photo: **{source.name}** · {source.image.width}×{source.image.height} · change or start over"):
        upload = image_uploader("Another photo", key="inpaint.upload", limits=settings.image_limits)
        st.button("Start over", icon=":material/restart_alt:", on_click=start_over, help="Forget this photo.")
if upload is not None and st.session_state.get(UPLOAD_SEEN) != upload.digest:
    st.session_state[UPLOAD_SEEN] = upload.digest
    st.session_state[SOURCE] = source = upload
    for name in (JOB, JOBS, JOB_SOURCE, PICK):
        st.session_state.pop(name, None)
    st.rerun()  # draw the page in its editing layout now, so nothing moves under the first stroke

if source is None:
    st.info("Upload a photo to start, or send one here from the Generate page.", icon=":material/upload:")
elif extend_chosen(key="inpaint"):  # grow the canvas instead (outpainting): its own controls and result
    extend_panel(source, key="inpaint.extend", use_result=keep_as_round)
else:
    kept = rounds()
    editor_column, run_column = st.columns([3, 2], gap="medium")

    # 2. The mask editor, and the rounds under it.
    with editor_column:
        selection = current_selection(source, key="inpaint")  # the Select tool's clicks so far and their mask
        drawing = mask_editor(source.image, source.digest, key="inpaint", selection=selection.layer)
        drawing = click_select(selection, drawing, key="inpaint")  # the selection added to (or cut from) the mask
        active = round_of(source)
        labels = ["Original", *(f"Round {index}" for index in range(1, len(kept)))]
        if len(kept) > 1:
            st.caption(f"**Rounds** · on the canvas: {labels[active]} · click another to put it back on the canvas")
            with st.container(horizontal=True, key="inpaint-rounds"):  # wraps on a phone instead of stacking
                for index, image in enumerate(kept):
                    with st.container(width=112, gap=None):
                        st.image(image.image, width=112)
                        st.button(
                            labels[index] + (" ✓" if index == active else ""),
                            key=f"inpaint.round.{index}",
                            on_click=show_round,
                            args=(index,),
                            disabled=index == active,
                            width="stretch",
                        )

        # 3. How: mode, model, prompt, options (under the editor, in reading order on a phone).
        mode = st.radio("Mode", [REMOVE, REPLACE], horizontal=True, key="inpaint.mode", persist_state="session")
        sampling = decoder = None
        prompt = negative = ""
        variations = 1
        if mode == REMOVE:
            spec = model_picker(
                studio.catalogue,
                "inpaint",
                key="inpaint.remove-model",
                keep=lambda spec: not spec.generative,
                prefer=lambda spec: spec.id == best_remover,
            )
        else:
            spec = model_picker(
                studio.catalogue,
                "inpaint",
                key="inpaint.replace-model",
                keep=lambda spec: spec.generative,
                prefer=lambda spec: spec.id == best_replacer,
            )
            prompt = st.text_area(
                "Prompt: what should be there", key="inpaint.prompt", height=68, persist_state="session"
            )
            negative = st.text_input("Negative prompt: what to avoid", key="inpaint.negative", persist_state="session")
            if spec is not None:
                prompt_length_warning(studio, spec, prompt)
                decoder = decoder_choice(spec, key="inpaint")
                with st.expander("Settings"):
                    sampling = sampling_controls(spec, key="inpaint", strength=True)
                    variations = st.slider(
                        "Variations",
                        1,
                        MAX_VARIATIONS,
                        1,
                        key="inpaint.variations",
                        help="Several results from consecutive seeds; each replays alone from its own seed.",
                        persist_state="session",
                    )

        with st.expander("Mask options"):
            options = mask_options(PhotoScale.of(source.image.size), key="inpaint")
            padding_column, whole_column = st.columns(2)
            padding = padding_column.slider(
                "Padding (px)",
                0,
                256,
                default(InpaintRequest, "padding"),
                step=8,
                key="inpaint.padding",
                help="Context around the mask the model sees.",
                persist_state="session",
            )
            whole_image = whole_column.checkbox(
                "Whole image",
                key="inpaint.whole",
                help="Process the whole image instead of a crop around the mask (slower).",
                persist_state="session",
            )
            painted = mask_preview(source.image, drawing, options, key="inpaint")

    # 4. Run, progress and the result, together; the column stays in view while the page scrolls.
    with run_column, st.container(key="sticky-inpaint-run"):
        job_ids: list[str] = st.session_state.get(JOBS) or ([st.session_state[JOB]] if JOB in st.session_state else [])
        statuses = [lookup(job_id) for job_id in job_ids]
        running = any(status is not None and not status.state.finished for status in statuses)
        if st.button(
            "Run",
            type="primary",
            icon=":material/play_arrow:",
            disabled=spec is None or painted is None or running,
            help="Paint a mask and pick a model first." if spec is None or painted is None else None,
            width="stretch",
        ):
            with shown_errors():
                fields = {} if sampling is None else sampling.request_fields(strength=True)
                first_seed = fields.pop("seed", None)
                if variations > 1 and first_seed is None:
                    first_seed = random_seed()  # drawn once: variation k uses seed + k
                requests = [
                    InpaintRequest(
                        model=spec.id,
                        image=source.image,
                        mask=drawing.mask,
                        prompt=prompt,
                        negative_prompt=negative,
                        mask_blur=options.mask_blur,
                        mask_grow=options.mask_grow,
                        invert_mask=options.invert_mask,
                        padding=padding,
                        whole_image=whole_image,
                        decoder=decoder,
                        seed=None if first_seed is None else first_seed + index,
                        **fields,
                    )
                    for index in range(variations)
                ]
                for request in requests:
                    studio.prepare(request)  # every variation is checked before any is queued
                job_ids = [
                    state.queue().submit(
                        request, session=state.session_id(), label=f"inpaint {source.name}", heartbeat=True
                    )
                    for request in requests
                ]
                st.session_state[JOB], st.session_state[JOBS], st.session_state[JOB_SOURCE] = (
                    job_ids[0],
                    job_ids,
                    source,
                )
                st.session_state.pop(PICK, None)
                st.rerun()

        # 4. Progress, then the result where the user is looking.
        if not job_ids:
            st.caption("Paint over what to change, then Run: progress and the result appear right here.")
        elif len(job_ids) == 1:
            result = job_result(job_ids[0], key="inpaint.job")
            results = [] if result is None else [result]
        else:

            def views():
                from core.batch import ItemView

                return [ItemView(f"variation {i + 1}", lookup(job_id), None, False) for i, job_id in enumerate(job_ids)]

            results = []
            if group_panel(key="inpaint.group", poll=views, cancel=lambda: cancel_all(job_ids)):
                for job_id in job_ids:
                    status = lookup(job_id)
                    if status is not None and status.state is JobState.DONE:
                        with shown_errors():
                            results.append(state.finished_result(status.key, status.id))
        if job_ids and results:
            picked = min(st.session_state.get(PICK, 0), len(results) - 1)
            result = results[picked]
            job_source = st.session_state.get(JOB_SOURCE, source)
            made = round_of(job_source) + 1
            original = rounds()[0]
            against_original = made > 1 and st.toggle(
                "Compare with the original", key="inpaint.against-original", persist_state="session"
            )
            before = original if against_original else job_source
            before_after(
                before.image,
                result.images[0],
                key="inpaint.compare",
                labels=("Original" if before is original else f"Round {made - 1}", "Result"),
                reveal=st.session_state.get("inpaint.revealed") != result.key,
            )
            st.session_state["inpaint.revealed"] = result.key
            if len(results) > 1:
                st.radio(
                    "Variation",
                    range(len(results)),
                    format_func=lambda index: f"{index + 1} (seed {results[index].seed})",
                    horizontal=True,
                    key=PICK,
                )
            variation = picked if len(results) > 1 else None
            file_name = result_name(made, result.parameters.get("model", "model"), variation)
            with st.container(horizontal=True):
                png_download(result.pngs[0], file_name, key="inpaint.download")
                st.button(
                    "Use as next round",
                    icon=":material/redo:",
                    on_click=keep_as_round,
                    args=(file_name, result.pngs[0]),
                    help="Keep editing: the result goes on the canvas as the next round.",
                )
            parameters = result.parameters
            generative = spec is not None and spec.generative and spec.id == parameters.get("model")
            reads_seed = studio.catalogue.get(parameters["model"]).kind.reads("inpaint", "seed")
            seed = f"seed {result.seed} · " if reads_seed else ""
            st.caption(
                f"{seed}model `{parameters.get('model')}` · {file_name}"
                + (" · from the cache" if result.cached else "")
            )
            if generative:
                reuse_seed_button(spec, result.seed, key="inpaint")

page_end()
