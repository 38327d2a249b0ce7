"""The prompt-length warning: CLIP text encoders read 77 tokens and silently drop the rest."""

from __future__ import annotations

import streamlit as st

from core.catalogue import ModelSpec
from core.prompts import truncation_warning
from core.runner import Studio


def exact_tokens(studio: Studio, spec: ModelSpec, text: str) -> tuple[int, int] | None:
    """(tokens, the encoder's limit) from the model's own tokenizer when the model is already in
    memory; None otherwise (nothing is loaded for this; `peek` never waits on a loading model)."""
    engine = studio.pool.peek(spec.id)
    count = getattr(engine, "prompt_token_count", None)
    if count is None:
        return None
    try:
        return count(text), int(engine.max_prompt_tokens)
    except Exception:  # the warning is advisory: never break the page over it
        return None


def prompt_length_warning(studio: Studio, spec: ModelSpec | None, text: str, *, what: str = "prompt") -> None:
    if not text.strip() or spec is None or spec.kind.prompt_limit is None:
        return
    tokens, limit = exact_tokens(studio, spec, text) or (None, spec.kind.prompt_limit)
    warning = truncation_warning(text, what=what, tokens=tokens, limit=limit)
    if warning is not None:
        st.warning(warning[0].upper() + warning[1:] + ".", icon=":material/content_cut:")


__all__ = ["exact_tokens", "prompt_length_warning"]
