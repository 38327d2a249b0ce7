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


def presets(spec: ModelSpec) -> dict[str, tuple[int, int]]:
    """Label -> (width, height), e.g. "Square 1:1 · 512×512"."""
    sized = {}
    for name, aspect in ASPECTS.items():
        width, height = size_for(spec, aspect)
        sized[f"{name} · {width}×{height}"] = (width, height)
    return sized


__all__ = ["ASPECTS", "presets", "size_for"]
