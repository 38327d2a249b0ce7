"""The model picker: models that can run now are choosable; the others are listed with how to get them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from core.catalogue import Catalogue, ModelSpec

TASK_NAMES = {"txt2img": "text-to-image", "inpaint": "inpainting", "segment": "click to select"}


def split_by_availability(specs: Sequence[ModelSpec]) -> tuple[list[ModelSpec], list[tuple[ModelSpec, str]]]:
    """(ready models, [(unavailable model, how to get it)]), in catalogue order."""
    ready, missing = [], []
    for spec in specs:
        availability = spec.availability()
        if availability.ready:
            ready.append(spec)
        else:
            missing.append((spec, availability.detail))
    return ready, missing


def show_unavailable(missing: Sequence[tuple[ModelSpec, str]], *, expanded: bool = False) -> None:
    if not missing:
        return
    noun = "model needs" if len(missing) == 1 else "models need"
    with st.expander(f"{len(missing)} more {noun} a download or a key", expanded=expanded, icon=":material/lock:"):
        for spec, hint in missing:
            st.markdown(f"**{spec.name}** (`{spec.id}`): {hint}")


def model_picker(
    catalogue: Catalogue,
    task: str,
    *,
    key: str,
    label: str = "Model",
    keep: Callable[[ModelSpec], bool] = lambda spec: True,
    prefer: Callable[[ModelSpec], bool] = lambda spec: False,
) -> ModelSpec | None:
    """A selectbox of the models for `task` that can run now (those `keep` accepts; those
    `prefer` accepts first, so one of them is the default), with the unavailable ones listed
    below it. None when none can run (the page then says so)."""
    ready, missing = split_by_availability([spec for spec in catalogue.for_task(task) if keep(spec)])
    ready.sort(key=lambda spec: not prefer(spec))  # stable: catalogue order otherwise
    chosen = None
    if ready:
        by_id = {spec.id: spec for spec in ready}
        model_id = st.selectbox(
            label,
            list(by_id),
            format_func=lambda model_id: by_id[model_id].name,
            key=key,
            help="Models that can run on this machine now.",
            persist_state="session",
        )
        chosen = by_id[model_id]
        if chosen.licence:
            st.caption(f"`{chosen.id}` · {chosen.engine} · licence: {chosen.licence}")
    else:
        st.info(
            f"No {TASK_NAMES.get(task, task)} model of this kind can run on this machine yet; see below how to get one."
        )
    show_unavailable(missing, expanded=not ready)
    return chosen


def multi_model_picker(
    catalogue: Catalogue, task: str, *, key: str, max_models: int, label: str = "Models"
) -> list[ModelSpec]:
    ready, missing = split_by_availability(catalogue.for_task(task))
    by_id = {spec.id: spec for spec in ready}
    chosen = st.multiselect(
        label,
        list(by_id),
        default=list(by_id)[:2],
        format_func=lambda model_id: by_id[model_id].name,
        max_selections=max_models,
        key=key,
        persist_state="session",
    )
    show_unavailable(missing, expanded=not ready)
    return [by_id[model_id] for model_id in chosen]


__all__ = ["TASK_NAMES", "model_picker", "multi_model_picker", "show_unavailable", "split_by_availability"]
