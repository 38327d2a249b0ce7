"""The Inpaint page's "Extend" mode: grow the canvas by pixels per side or to an aspect ratio, see
the new frame before running, and run it through the shared queue like any edit (core.outpaint)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st
from PIL import Image

from core.errors import StudioError
from core.outpaint import ANCHORS, Sides, extended, sides_for_aspect
from core.requests import OutpaintRequest, default
from core.ui import state
from core.ui.downloads import png_download, result_file_name
from core.ui.errors import shown_errors
from core.ui.jobs import job_result, lookup
from core.ui.models import model_picker
from core.ui.prompts import prompt_length_warning
from core.ui.sampling import decoder_choice, sampling_controls
from core.ui.uploads import LoadedImage

PAINT, EXTEND = "Paint a mask", "Extend the canvas"
BY_PIXELS, BY_ASPECT = "By pixels", "To an aspect ratio"
ASPECTS = ("16:9", "3:2", "4:3", "1:1", "4:5", "2:3", "9:16", "21:9")
PREVIEW_SIDE = 640
NEW_AREA_TINT = (80, 140, 255)
_DEFAULT_STRENGTH = default(OutpaintRequest, "strength")


def extend_chosen(*, key: str) -> bool:
    """The page's choice between painting a mask and extending the canvas."""
    return st.segmented_control("What to do", [PAINT, EXTEND], default=PAINT, key=f"{key}.what") == EXTEND


def frame_preview(image: Image.Image, sides: Sides) -> Image.Image:
    """The new frame at preview size: the photo where it will sit, the new area tinted over a rough
    edge-extended fill (the same first step the run takes)."""
    scale = min(1.0, PREVIEW_SIDE / max(sides.new_size(image.size)))
    small = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
    )
    scaled = Sides(*(round(value * scale) for value in (sides.left, sides.top, sides.right, sides.bottom)))
    frame, mask = extended(small, scaled)
    pixels = np.asarray(frame, np.float32)
    new = (np.asarray(mask) > 0)[..., None]
    tinted = np.where(new, pixels * 0.55 + np.array(NEW_AREA_TINT, np.float32) * 0.45, pixels)
    return Image.fromarray(tinted.round().astype(np.uint8))


def _sides(image: Image.Image, *, key: str) -> tuple[Sides | None, dict]:
    """The controls; (sides to show, request fields) — None and {} while nothing is asked for."""
    how = st.radio("Grow", [BY_PIXELS, BY_ASPECT], horizontal=True, key=f"{key}.how")
    if how == BY_PIXELS:
        columns = st.columns(4)
        values = {
            side: int(column.number_input(f"{side.title()} (px)", 0, 4096, 0, step=64, key=f"{key}.{side}"))
            for column, side in zip(columns, ("left", "top", "right", "bottom"), strict=True)
        }
        sides = Sides(**values)
        return (sides, values) if any(values.values()) else (None, {})
    aspect_column, anchor_column = st.columns(2)
    aspect = aspect_column.selectbox("Aspect ratio (width:height)", ASPECTS, key=f"{key}.aspect")
    anchor = anchor_column.selectbox(
        "Photo sits at", list(ANCHORS), key=f"{key}.anchor", help="center grows both sides; left grows the right."
    )
    try:
        return sides_for_aspect(image.size, aspect, anchor), {"aspect": aspect, "anchor": anchor}
    except StudioError as error:
        st.info(error.message, icon=":material/aspect_ratio:")
        return None, {}


def extend_panel(source: LoadedImage, *, key: str, use_result: Callable[[str, bytes], None]) -> None:
    """Controls and preview on the left, the job and its result on the right."""
    studio = state.studio()
    job_key = f"{key}.job"
    controls, result_column = st.columns([3, 2], gap="large")
    with controls:
        sides, fields = _sides(source.image, key=key)
        if sides is not None:
            width, height = sides.new_size(source.image.size)
            st.image(
                frame_preview(source.image, sides),
                width="stretch",
                caption=f"New frame: {width}×{height} (new area tinted)",
            )
        best = studio.catalogue.default_generative_model("inpaint")
        spec = model_picker(
            studio.catalogue,
            "inpaint",
            key=f"{key}.model",
            prefer=lambda spec: spec.id == best,
        )
        prompt = negative = ""
        extra: dict = {}
        if spec is not None and spec.generative:
            prompt = st.text_area("Prompt: what the new area shows", key=f"{key}.prompt", height=80)
            negative = st.text_input("Negative prompt: what to avoid", key=f"{key}.negative")
            prompt_length_warning(studio, spec, prompt)
            extra["decoder"] = decoder_choice(spec, key=key)
            with st.expander("Settings", expanded=False):
                extra["strength"] = st.slider(
                    "Strength",
                    0.05,
                    1.0,
                    _DEFAULT_STRENGTH,
                    step=0.05,
                    key=f"{key}.{spec.id}.strength",
                    help="Below 1 the model starts from the pre-filled colours (smoother joins); 1 ignores them.",
                )
                extra.update(sampling_controls(spec, key=key).request_fields(strength=False))
        elif spec is not None:
            st.caption("A remover fills the new area by itself (no prompt); pick a diffusion model to paint it.")
        current = lookup(st.session_state[job_key]) if job_key in st.session_state else None
        running = current is not None and not current.state.finished
        ready = spec is not None and sides is not None
        if st.button(
            "Extend",
            type="primary",
            icon=":material/open_in_full:",
            disabled=not ready or running,
            help=None if ready else "Choose how much to grow and a model first.",
            key=f"{key}.run",
        ):
            with shown_errors():
                request = OutpaintRequest(
                    model=spec.id, image=source.image, prompt=prompt, negative_prompt=negative, **fields, **extra
                )
                job_id = state.queue().submit(
                    request, session=state.session_id(), label=f"extend {source.name}", heartbeat=True
                )
                st.session_state[job_key] = job_id
                st.rerun()
    with result_column:
        if job_key not in st.session_state:
            st.caption("The extended image appears here; the original pixels stay exactly as they are.")
            return
        result = job_result(st.session_state[job_key], key=f"{key}.job-panel")
        if result is None:
            return
        with shown_errors():
            image = result.images[0]
            st.subheader("Result")
            st.image(image, width="stretch", caption=f"{image.width}×{image.height}")
            file_name = result_file_name(result)
            png_download(result.pngs[0], file_name, key=f"{key}.download")
            st.button(
                "Use result as new input",
                icon=":material/redo:",
                on_click=_reuse,
                args=(use_result, file_name, result.pngs[0], job_key),
                key=f"{key}.reuse",
                help="Keep editing the extended image (paint a mask, or extend again).",
            )
            st.caption(f"model `{result.parameters.get('model')}`" + (" · from the cache" if result.cached else ""))


def _reuse(use_result: Callable[[str, bytes], None], name: str, png: bytes, job_key: str) -> None:
    use_result(name, png)
    st.session_state.pop(job_key, None)


__all__ = ["EXTEND", "PAINT", "extend_chosen", "extend_panel", "frame_preview"]
