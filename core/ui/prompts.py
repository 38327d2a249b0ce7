"""The prompt-length warning: CLIP text encoders read 77 tokens and silently drop the rest."""

from __future__ import annotations

import re

import streamlit as st

from core.catalogue import ModelSpec
from core.runner import Studio

CLIP_MAX_TOKENS = 77  # start and end markers included
_PIECES = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")


def estimate_tokens(text: str) -> int:
    """A cheap upper-leaning estimate of CLIP's count, start and end markers included: one token
    per word, digit and punctuation mark, plus one per 7 further letters of a long word (rare
    words split into pieces)."""
    count = 2
    for piece in _PIECES.findall(text):
        count += 1 + max(0, len(piece) - 1) // 7
    return count


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
    if not text.strip() or spec is None or spec.engine != "diffusers":
        return
    exact = exact_tokens(studio, spec, text)
    if exact is not None:
        tokens, limit = exact
        how = "counted by the model's tokenizer"
    else:
        tokens, limit = estimate_tokens(text), CLIP_MAX_TOKENS
        how = "estimated; the exact count appears once the model is loaded"
    if tokens > limit:
        st.warning(
            f"The {what} is about {tokens} tokens ({how}); the text encoder reads only {limit}, "
            "so the end of it will be ignored. Shorten it or put what matters first.",
            icon=":material/content_cut:",
        )


__all__ = ["CLIP_MAX_TOKENS", "estimate_tokens", "exact_tokens", "prompt_length_warning"]
