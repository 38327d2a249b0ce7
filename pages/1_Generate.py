"""Generate: text to image."""

from __future__ import annotations

import streamlit as st

from core.requests import GenerateRequest
from core.ui import state
from core.ui.downloads import png_download, result_file_name
from core.ui.errors import shown_errors
from core.ui.jobs import job_result, lookup
from core.ui.models import model_picker
from core.ui.page import page_end, page_start
from core.ui.prompts import prompt_length_warning
from core.ui.restore import png_restore
from core.ui.sampling import decoder_choice, reuse_seed_button, sampling_controls
from core.ui.sizes import presets
from core.ui.uploads import load_named

JOB = "generate.job"


def send_to_inpaint(name: str, png: bytes) -> None:
    st.session_state["inpaint.source"] = load_named(name, png, state.settings().image_limits)
    st.session_state.pop("inpaint.job", None)


page_start(
    "Generate",
    ":material/auto_awesome:",
    "Describe an image; get one or more, each a PNG carrying the settings that made it.",
)

studio = state.studio()
controls, gallery = st.columns([2, 3], gap="large")

with controls:
    png_restore(studio.catalogue)  # before the widgets: a dropped PNG sets them
    prompt = st.text_area(
        "Prompt",
        key="generate.prompt",
        height=110,
        placeholder="a lighthouse on a cliff at dawn, oil painting",
        persist_state="session",
    )
    negative = st.text_input(
        "Negative prompt", key="generate.negative", placeholder="blurry, text, watermark", persist_state="session"
    )
    default_model = studio.catalogue.default_generative_model("txt2img")  # hosted on a GPU-less host with a token
    spec = model_picker(studio.catalogue, "txt2img", key="generate.model", prefer=lambda spec: spec.id == default_model)
    if spec is not None:
        prompt_length_warning(studio, spec, prompt)
        prompt_length_warning(studio, spec, negative, what="negative prompt")
        sizes = presets(spec, also=st.session_state.get(f"generate.custom-size.{spec.id}"))
        size_label = st.selectbox(
            "Size",
            list(sizes),
            key=f"generate.size.{spec.id}",
            help=f"Multiples of {spec.size_multiple}, at most {spec.max_side} px a side.",
            persist_state="session",
        )
        count = st.slider("Images", 1, spec.max_images, 1, key=f"generate.count.{spec.id}", persist_state="session")
        decoder = decoder_choice(spec, key="generate")
        with st.expander("Settings", expanded=False):
            sampling = sampling_controls(spec, key="generate", scheduler=True)

    current = lookup(st.session_state[JOB]) if JOB in st.session_state else None
    running = current is not None and not current.state.finished
    if st.button("Generate", type="primary", icon=":material/play_arrow:", disabled=spec is None or running):
        with shown_errors():
            width, height = sizes[size_label]
            request = GenerateRequest(
                model=spec.id,
                prompt=prompt,
                negative_prompt=negative,
                width=width,
                height=height,
                num_images=count,
                decoder=decoder,
                **sampling.request_fields(strength=False),
            )
            st.session_state[JOB] = state.queue().submit(
                request, session=state.session_id(), label="generate", heartbeat=True
            )
            st.rerun()

with gallery, st.container(key="sticky-generate-gallery"):
    if JOB not in st.session_state:
        st.info("Your images appear here.", icon=":material/image:")
    else:
        result = job_result(st.session_state[JOB], key="generate.job")
        if result is not None:
            with shown_errors():
                parameters = result.parameters
                st.markdown(
                    f"Seed **{result.seed}**{' (image k: seed + k − 1)' if len(result.pngs) > 1 else ''} · "
                    f"{parameters.get('width')}×{parameters.get('height')} · "
                    f"{parameters.get('num_inference_steps')} steps · guidance {parameters.get('guidance_scale')} · "
                    f"{parameters.get('scheduler') or 'default scheduler'} · `{parameters.get('model')}`"
                )
                columns = st.columns(min(2, len(result.pngs)))
                for index, png in enumerate(result.pngs):
                    with columns[index % len(columns)]:
                        filtered = index < len(result.filtered) and result.filtered[index]
                        st.image(png, width="stretch", caption="hidden by the safety checker" if filtered else None)
                        if filtered:
                            continue
                        name = result_file_name(result, index)
                        png_download(png, name, key=f"generate.download.{index}")
                        if st.button("Edit in Inpaint", key=f"generate.edit.{index}", icon=":material/brush:"):
                            send_to_inpaint(name, png)
                            st.switch_page("pages/2_Inpaint.py")
                        if spec is not None and spec.id == parameters.get("model"):
                            reuse_seed_button(spec, result.seed_of(index), key="generate")

page_end()
