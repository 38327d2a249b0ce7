"""Inpaint: paint over part of a photo, then remove it or replace it from a prompt."""

from __future__ import annotations

import streamlit as st

from core.requests import InpaintRequest
from core.ui import state
from core.ui.compare import before_after
from core.ui.downloads import png_download, result_file_name
from core.ui.errors import shown_errors
from core.ui.jobs import job_result, lookup
from core.ui.mask_editor import MaskOptions, PhotoScale, mask_editor, mask_preview
from core.ui.models import model_picker
from core.ui.prompts import prompt_length_warning
from core.ui.sampling import decoder_choice, sampling_controls
from core.ui.uploads import LoadedImage, image_uploader, load_named

SOURCE, JOB, JOB_SOURCE, UPLOAD_SEEN = "inpaint.source", "inpaint.job", "inpaint.job-source", "inpaint.upload-seen"
REMOVE, REPLACE = "Remove", "Replace or regenerate"


def use_result_as_input(name: str, png: bytes) -> None:
    settings = state.settings()
    st.session_state[SOURCE] = load_named(name, png, settings.image_limits)
    st.session_state.pop(JOB, None)


st.set_page_config(page_title="Inpaint · Canvas Studio", page_icon=":material/brush:", layout="wide")
st.title("Inpaint")
st.caption("Paint over part of a photo, then remove it (no prompt) or replace it with what you describe.")

settings, studio = state.settings(), state.studio()
best_remover = studio.catalogue.default_remove_model()  # LaMa when downloaded, else OpenCV
best_replacer = studio.catalogue.default_generative_model("inpaint")  # hosted on a GPU-less host with a token

# 1. The photo: a new upload, or the image sent from Generate / a previous round.
upload = image_uploader("Photo (JPEG, PNG or WebP)", key="inpaint.upload", limits=settings.image_limits)
if upload is not None and st.session_state.get(UPLOAD_SEEN) != upload.digest:
    st.session_state[UPLOAD_SEEN] = upload.digest
    st.session_state[SOURCE] = upload
source: LoadedImage | None = st.session_state.get(SOURCE)
if source is None:
    st.info("Upload a photo to start, or send one here from the Generate page.", icon=":material/upload:")
    st.stop()
info, clear = st.columns([5, 1])
info.caption(f"Editing **{source.name}** · {source.image.width}×{source.image.height}")
if clear.button("Start over", icon=":material/restart_alt:", help="Forget this photo and its result."):
    for name in (SOURCE, JOB, JOB_SOURCE):
        st.session_state.pop(name, None)
    st.rerun()

# 2. The mask: the canvas on the left, the live preview on the right.
canvas_column, preview_column = st.columns([3, 2], gap="large")
with canvas_column:
    drawing = mask_editor(source.image, source.digest, key="inpaint")
with preview_column:
    blur_column, grow_column = st.columns(2)
    scale = PhotoScale.of(source.image.size)
    options = MaskOptions(
        mask_blur=blur_column.slider(
            "Feather (px)",
            0,
            scale.max_feather,
            scale.feather,
            key=f"inpaint.blur.{scale.max_feather}",
            help="Soft edge of the blend, in photo pixels (the default follows the photo's size).",
        ),
        mask_grow=grow_column.slider(
            "Grow / shrink (px)",
            -scale.max_grow,
            scale.max_grow,
            0,
            key=f"inpaint.grow.{scale.max_grow}",
            help="Enlarge (+) or shrink (-) the mask, in photo pixels.",
        ),
        invert_mask=st.checkbox("Invert (change everything except what is painted)", key="inpaint.invert"),
    )
    painted = mask_preview(source.image, drawing, options, key="inpaint")
    padding_column, whole_column = st.columns(2)
    padding = padding_column.slider(
        "Padding", 0, 256, 32, step=8, key="inpaint.padding", help="Context around the mask the model sees."
    )
    whole_image = whole_column.checkbox(
        "Whole image", key="inpaint.whole", help="Process the whole image instead of a crop around the mask (slower)."
    )

# 3. How (left): remove, or replace from a prompt. 4. The job and its result (right).
how_column, result_column = st.columns([3, 2], gap="large")
with how_column:
    mode = st.radio("Mode", [REMOVE, REPLACE], horizontal=True, key="inpaint.mode")
    sampling = decoder = None
    prompt = negative = ""
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
        prompt = st.text_area("Prompt: what should be there", key="inpaint.prompt", height=80)
        negative = st.text_input("Negative prompt: what to avoid", key="inpaint.negative")
        if spec is not None:
            prompt_length_warning(studio, spec, prompt)
            decoder = decoder_choice(spec, key="inpaint")
            with st.expander("Settings", expanded=True):
                sampling = sampling_controls(spec, key="inpaint", strength=True)

    current = lookup(st.session_state[JOB]) if JOB in st.session_state else None
    running = current is not None and not current.state.finished
    if st.button(
        "Run",
        type="primary",
        icon=":material/play_arrow:",
        disabled=spec is None or painted is None or running,
        help="Paint a mask and pick a model first." if spec is None or painted is None else None,
    ):
        with shown_errors():
            request = InpaintRequest(
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
                **({} if sampling is None else sampling.request_fields(strength=True)),
            )
            job_id = state.queue().submit(
                request, session=state.session_id(), label=f"inpaint {source.name}", heartbeat=True
            )
            st.session_state[JOB], st.session_state[JOB_SOURCE] = job_id, source
            st.rerun()

finished = None
with result_column:
    if JOB not in st.session_state:
        st.caption("The result appears here, next to the original, with a before/after slider below.")
    else:
        result = job_result(st.session_state[JOB], key="inpaint.job")
        if result is not None:
            with shown_errors():
                after = result.images[0]
                st.subheader("Result")
                st.image(after, width="stretch")
                file_name = result_file_name(result)
                png_download(result.pngs[0], file_name, key="inpaint.download")
                st.button(
                    "Use result as new input",
                    icon=":material/redo:",
                    on_click=use_result_as_input,
                    args=(file_name, result.pngs[0]),
                    help="Keep editing: the result becomes the photo on the canvas.",
                )
                parameters = result.parameters
                seed = f"seed {result.seed} · " if parameters.get("engine", "").startswith("diffusers") else ""
                st.caption(f"{seed}model `{parameters.get('model')}`" + (" · from the cache" if result.cached else ""))
                finished = after

if finished is not None:
    original = st.session_state.get(JOB_SOURCE, source)
    before_after(original.image, finished, key="inpaint.compare", labels=("Original", "Result"))
