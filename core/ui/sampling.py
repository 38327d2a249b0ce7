"""Sampling controls shared by the pages: steps, guidance, seed, strength, scheduler.

Widget keys include the model id, so each model keeps its own settings and starts from its own
catalogue defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import streamlit as st

from core import requests
from core.catalogue import ModelSpec
from core.requests import DECODERS, MAX_GUIDANCE, MAX_SEED, MAX_STEPS, SCHEDULERS, InpaintRequest

MODEL_DEFAULT = "Model default"


@dataclass(frozen=True)
class Sampling:
    num_inference_steps: int
    guidance_scale: float
    seed: int | None  # None: a random seed is drawn per run (the result shows which)
    scheduler: str | None = None
    strength: float = requests.default(InpaintRequest, "strength")

    def request_fields(self, *, strength: bool) -> dict[str, Any]:
        """These settings as core request fields (the dataclass names are the requests' names)."""
        fields = dataclasses.asdict(self)
        if not strength:
            fields.pop("strength")
        return fields


def seed_input(*, key: str) -> int | None:
    random_seed = st.toggle(
        "Random seed",
        value=True,
        key=f"{key}.seed-random",
        help="Off: use the seed below every time.",
        persist_state="session",
    )
    seed = st.number_input(
        "Seed",
        min_value=0,
        max_value=MAX_SEED,
        value=0,
        step=1,
        key=f"{key}.seed",
        disabled=random_seed,
        help="The same seed and settings give the same image.",
        persist_state="session",
    )
    return None if random_seed else int(seed)


def reuse_seed_button(spec: ModelSpec, seed: int, *, key: str) -> None:
    """Fix `spec`'s seed on this page to `seed` (its Settings then show it), to vary a prompt or steps
    from the same start."""
    prefix = f"{key}.{spec.id}"

    def reuse() -> None:
        st.session_state[f"{prefix}.seed-random"] = False
        st.session_state[f"{prefix}.seed"] = int(seed)

    st.button(
        f"Reuse seed {seed}",
        key=f"{key}.reuse-seed.{seed}",
        icon=":material/replay:",
        on_click=reuse,
        help="Turn off the random seed and use this one for the next run.",
    )


def sampling_controls(spec: ModelSpec, *, key: str, strength: bool = False, scheduler: bool = False) -> Sampling:
    prefix = f"{key}.{spec.id}"
    steps = st.slider(
        "Steps",
        1,
        MAX_STEPS,
        int(spec.default_steps),
        key=f"{prefix}.steps",
        help="More steps: slower, often finer detail.",
        persist_state="session",
    )
    guidance = st.slider(
        "Guidance",
        0.0,
        MAX_GUIDANCE,
        float(spec.default_guidance),
        step=0.5,
        key=f"{prefix}.guidance",
        help="How strictly to follow the prompt (turbo models want 0).",
        persist_state="session",
    )
    chosen_strength = requests.default(InpaintRequest, "strength")
    if strength:
        chosen_strength = st.slider(
            "Strength",
            0.05,
            1.0,
            chosen_strength,
            step=0.05,
            key=f"{prefix}.strength",
            help="1 replaces the masked area; lower keeps more of what was there (regenerate).",
            persist_state="session",
        )
    chosen_scheduler = None
    if scheduler:
        default = spec.default_scheduler or MODEL_DEFAULT
        options = [MODEL_DEFAULT, *SCHEDULERS]
        picked = st.selectbox(
            "Scheduler", options, index=options.index(default), key=f"{prefix}.scheduler", persist_state="session"
        )
        chosen_scheduler = None if picked == MODEL_DEFAULT else picked
    return Sampling(steps, guidance, seed_input(key=prefix), chosen_scheduler, chosen_strength)


def decoder_choice(spec: ModelSpec, *, key: str) -> str | None:
    """The visible "Decoder: fast / full" choice for models with a tiny autoencoder (None for the
    others); its default is the core's (fast on a CPU)."""
    default = spec.default_decoder()
    if default is None or not spec.tiny_vae:
        return None
    return st.radio(
        "Decoder",
        DECODERS,
        index=DECODERS.index(default),
        horizontal=True,
        key=f"{key}.{spec.id}.decoder",
        persist_state="session",
        help="fast: a tiny autoencoder (TAESD), about 15x quicker on a CPU, slightly softer fine detail. "
        "full: the model's own VAE. The choice is saved in the PNG's parameters.",
    )


__all__ = ["MODEL_DEFAULT", "Sampling", "decoder_choice", "reuse_seed_button", "sampling_controls", "seed_input"]
