"""Prompt length: CLIP text encoders read 77 tokens and silently drop the rest, so say so."""

from __future__ import annotations

import re

CLIP_MAX_TOKENS = 77  # start and end markers included
_PIECES = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")


def estimate_tokens(text: str) -> int:
    """A cheap upper-leaning estimate of CLIP's count, start and end markers included: one token
    per word, digit and punctuation mark, plus one per 7 further letters of a long word (rare
    words split into pieces). Needs no tokenizer, so no model is loaded to warn."""
    count = 2
    for piece in _PIECES.findall(text):
        count += 1 + max(0, len(piece) - 1) // 7
    return count


def prompt_warnings(prompt: str, negative_prompt: str, *, limit: int = CLIP_MAX_TOKENS) -> tuple[str, ...]:
    """What to tell people about a request's prompts, for an engine whose text encoder reads `limit` tokens."""
    found = (
        truncation_warning(prompt, limit=limit),
        truncation_warning(negative_prompt, what="negative prompt", limit=limit),
    )
    return tuple(warning for warning in found if warning)


def truncation_warning(text: str, *, what: str = "prompt", tokens: int | None = None, limit: int = CLIP_MAX_TOKENS) -> str | None:
    """One line when `text` is longer than the text encoder reads (`tokens`: an exact count, if known)."""
    count = estimate_tokens(text) if tokens is None else tokens
    if not text.strip() or count <= limit:
        return None
    how = "estimated" if tokens is None else "counted by the model's tokenizer"
    return (
        f"the {what} is about {count} tokens ({how}); the text encoder reads only {limit}, "
        "so the end of it will be ignored: shorten it or put what matters first"
    )
