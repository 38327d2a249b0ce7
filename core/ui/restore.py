"""Restoring the Generate page's settings from parameters: a dropped PNG (ours, or one carrying
A1111 `parameters` text) or a result picked on the History page.

Widget values are set through session_state before the widgets are drawn (a rerun, or a switch
to the Generate page), so every restored setting shows in its widget and stays editable. What
cannot be restored (a model not in this catalogue, a size the model cannot make) is said, never
silently changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from core.catalogue import Catalogue
from core.errors import StudioError
from core.history import generate_fields
from core.infotext import png_parameters
from core.requests import SCHEDULERS
from core.ui.mask_editor import PhotoScale, feather_grow_ranges
from core.ui.sampling import MODEL_DEFAULT
from core.ui.sizes import fits, label_for, presets

NOTES = "restore.notes"  # what the last restore could not do, shown once on the Generate page
INPAINT_NOTES = "inpaint.restore-notes"  # the same for an edit sent to the Inpaint page
PAGE_KEY = "generate"  # the Generate page's widget keys start with this


def restore_generate(parameters: Mapping[str, Any], catalogue: Catalogue, *, key: str = PAGE_KEY) -> list[str]:
    """Set the Generate page's widgets to `parameters`; returns what could not be restored."""
    fields = generate_fields(parameters)
    notes: list[str] = []
    state = st.session_state
    state[f"{key}.prompt"] = fields.get("prompt", "")
    state[f"{key}.negative"] = fields.get("negative_prompt", "")
    spec = _model(fields.get("model"), parameters.get("model_name"), catalogue)
    if spec is None:
        current = state.get(f"{key}.model")
        spec = catalogue.get(current) if current in {s.id for s in catalogue.for_task("txt2img")} else None
        if fields.get("model"):
            notes.append(f"model {fields['model']!r} is not in this catalogue; pick one")
        if spec is None:
            return notes
    else:
        state[f"{key}.model"] = spec.id
    prefix = f"{key}.{spec.id}"
    if "width" in fields and "height" in fields:
        size = (fields["width"], fields["height"])
        if fits(spec, size):
            state[f"{key}.custom-size.{spec.id}"] = size
            state[f"{key}.size.{spec.id}"] = label_for(presets(spec, also=size), size)
        else:
            notes.append(f"{spec.name} cannot make {size[0]}×{size[1]}; pick a size")
    if isinstance(fields.get("num_images"), int) and 1 <= fields["num_images"] <= spec.max_images:
        state[f"{key}.count.{spec.id}"] = fields["num_images"]
    if "num_inference_steps" in fields:
        state[f"{prefix}.steps"] = int(fields["num_inference_steps"])
    if "guidance_scale" in fields:
        state[f"{prefix}.guidance"] = float(fields["guidance_scale"])
    scheduler = fields.get("scheduler")
    if scheduler in SCHEDULERS:
        state[f"{prefix}.scheduler"] = scheduler
    elif scheduler is None:
        state[f"{prefix}.scheduler"] = spec.default_scheduler or MODEL_DEFAULT
    if isinstance(fields.get("seed"), int):
        state[f"{prefix}.seed-random"] = False
        state[f"{prefix}.seed"] = fields["seed"]
    return notes


def restore_inpaint(
    parameters: Mapping[str, Any], catalogue: Catalogue, photo_size: tuple[int, int], *, key: str = "inpaint"
) -> list[str]:
    """Set the Inpaint page's settings (mode, model, prompts, sampling, mask options) to an edit's
    `parameters`; the photo (of `photo_size`) is set by the caller. Returns what could not be restored."""
    state = st.session_state
    spec = _model(parameters.get("model"), parameters.get("model_name"), catalogue, task="inpaint")
    if spec is None:
        return (
            [f"model {parameters.get('model')!r} is not in this catalogue; pick one"] if parameters.get("model") else []
        )
    if spec.generative:
        state[f"{key}.mode"] = "Replace or regenerate"
        state[f"{key}.replace-model"] = spec.id
        state[f"{key}.prompt"] = str(parameters.get("prompt", ""))
        state[f"{key}.negative"] = str(parameters.get("negative_prompt", ""))
        prefix = f"{key}.{spec.id}"
        for name, widget, kind in (
            ("num_inference_steps", "steps", int),
            ("guidance_scale", "guidance", float),
            ("strength", "strength", float),
        ):
            if isinstance(parameters.get(name), (int, float)) and not isinstance(parameters.get(name), bool):
                state[f"{prefix}.{widget}"] = kind(parameters[name])
        if isinstance(parameters.get("seed"), int):
            state[f"{prefix}.seed-random"] = False
            state[f"{prefix}.seed"] = parameters["seed"]
    else:
        state[f"{key}.mode"] = "Remove"
        state[f"{key}.remove-model"] = spec.id
    for name, widget in (("invert_mask", "invert"), ("whole_image", "whole")):
        if isinstance(parameters.get(name), bool):
            state[f"{key}.{widget}"] = parameters[name]
    if isinstance(parameters.get("padding"), int):
        state[f"{key}.padding"] = parameters["padding"]
    # The feather and grow sliders' keys carry the photo's scale (core.ui.mask_editor.mask_options).
    notes = []
    for name, (widget, low, high) in feather_grow_ranges(PhotoScale.of(photo_size), key=key).items():
        value = parameters.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            if low <= value <= high:
                state[widget] = value
            else:
                notes.append(f"{name} {value} is outside this photo's range ({low} to {high}); set it by hand")
    return notes


def _model(model_id: str | None, model_name: str | None, catalogue: Catalogue, *, task: str = "txt2img"):
    """Our catalogue entry for an id (ours) or a name (A1111 writes its checkpoint's name)."""
    candidates = catalogue.for_task(task)
    for wanted in (model_id, model_name):
        if not wanted:
            continue
        for spec in candidates:
            if wanted.lower() in (spec.id.lower(), spec.name.lower()):
                return spec
    return None


def png_restore(catalogue: Catalogue, *, key: str = PAGE_KEY) -> None:
    """ "Restore settings from a PNG": drop one and the page's widgets take its parameters.

    Call before the page draws its widgets (their values are set, then the page reruns)."""
    with st.expander("Restore settings from a PNG", icon=":material/settings_backup_restore:"):
        dropped = st.file_uploader(
            "A PNG made here, or by AUTOMATIC1111 (its 'parameters' text)",
            type=["png"],
            key=f"{key}.restore-png",
            help="Only the settings are read, never the pixels.",
        )
        if dropped is not None and st.session_state.get(f"{key}.restored-from") != dropped.file_id:
            try:
                parsed = png_parameters(dropped.getvalue())
            except StudioError as error:
                st.error(error.message, icon=":material/error:")
                return
            st.session_state[f"{key}.restored-from"] = dropped.file_id
            notes = restore_generate(parsed.fields, catalogue, key=key)
            if parsed.skipped:
                notes.append(f"not understood: {', '.join(parsed.skipped)}")
            st.session_state[NOTES] = [f"Settings restored from {dropped.name}.", *notes]
            st.rerun()
    show_notes(NOTES)


def show_notes(key: str) -> None:
    """What the last restore said, once."""
    for note in st.session_state.pop(key, []):
        st.caption(note)


__all__ = ["INPAINT_NOTES", "NOTES", "png_restore", "restore_generate", "restore_inpaint", "show_notes"]
