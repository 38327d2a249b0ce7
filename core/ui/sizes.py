"""Output size presets by aspect ratio, valid for the chosen model (multiples of its
size_multiple, no side above its max_side, about its working area)."""

from __future__ import annotations

import math

from core.catalogue import ModelSpec
from core.requests import MIN_SIDE

ASPECTS: dict[str, tuple[int, int]] = {
    "Square 1:1": (1, 1),
    "Landscape 4:3": (4, 3),
    "Portrait 3:4": (3, 4),
    "Photo 3:2": (3, 2),
    "Tall photo 2:3": (2, 3),
    "Wide 16:9": (16, 9),
    "Phone 9:16": (9, 16),
}


def size_for(spec: ModelSpec, aspect: tuple[int, int]) -> tuple[int, int]:
    """(width, height) with the model's working area (working_resolution squared) at `aspect`,
    scaled down to fit its max_side (or up so no side is under MIN_SIDE), rounded to its
    size_multiple."""
    side = spec.working_resolution or 512
    ratio = aspect[0] / aspect[1]
    width, height = side * math.sqrt(ratio), side / math.sqrt(ratio)
    scale = min(1.0, spec.max_side / max(width, height))
    scale *= max(1.0, MIN_SIDE / (min(width, height) * scale))
    multiple = max(1, spec.size_multiple)
    low = math.ceil(MIN_SIDE / multiple) * multiple
    top = spec.max_side // multiple * multiple

    def fit(value: float) -> int:
        return min(top, max(low, round(value * scale / multiple) * multiple))

    return fit(width), fit(height)


def presets(spec: ModelSpec, also: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
    """Label -> (width, height), e.g. "Square 1:1 · 512×512"; `also` (a restored size) is added as
    "Custom · W×H" when no preset has it and the model can make it."""
    sized = {}
    for name, aspect in ASPECTS.items():
        width, height = size_for(spec, aspect)
        sized[f"{name} · {width}×{height}"] = (width, height)
    if also is not None and tuple(also) not in sized.values() and fits(spec, also):
        sized[custom_label(also)] = tuple(also)
    return sized


def custom_label(size: tuple[int, int]) -> str:
    return f"Custom · {size[0]}×{size[1]}"


def fits(spec: ModelSpec, size: tuple[int, int]) -> bool:
    """Whether the model can generate at `size` (its multiple, MIN_SIDE..max_side)."""
    multiple = max(1, spec.size_multiple)
    return all(isinstance(side, int) and MIN_SIDE <= side <= spec.max_side and side % multiple == 0 for side in size)


def label_for(sizes: dict[str, tuple[int, int]], size: tuple[int, int]) -> str | None:
    return next((label for label, value in sizes.items() if value == tuple(size)), None)


__all__ = ["ASPECTS", "custom_label", "fits", "label_for", "presets", "size_for"]
