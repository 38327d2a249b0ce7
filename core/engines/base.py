"""The one small interface every engine implements, and the progress/cancel callback type.

Engines only do the model part. The runner (`core/runner.py`) owns everything around it:
validation, cropping around the mask, fitting to the working resolution, pasting back only
masked pixels, caching and provenance — so every engine gets that for free (as IOPaint's
`InpaintModel` base does for its models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from core.catalogue import ModelSpec
from core.requests import GenerateRequest, InpaintRequest

Preview = Callable[[], Image.Image]


class Reporter(Protocol):
    """Called by engines between steps: `report(step, total, preview)`.

    `step` goes 0..total and never decreases; `preview`, when given, renders the current state
    cheaply (only called if someone looks). The reporter raises `core.errors.CancelledError` to
    stop the run: engines let it propagate and return nothing.
    """

    def __call__(self, step: int, total: int, preview: Preview | None = None) -> None: ...


def silent_reporter(step: int, total: int, preview: Preview | None = None) -> None:
    """A reporter for callers that neither watch progress nor cancel."""


@dataclass(frozen=True)
class Generated:
    """What an engine made: RGB images, and per image whether the model's safety checker
    replaced it (a filtered image is reported as filtered, never passed off as a result)."""

    images: list[Image.Image]
    filtered: tuple[bool, ...] = ()


class Engine(Protocol):
    spec: ModelSpec  # (versions live in the registry, core/engines/__init__.py, so keys need no loaded model)

    def text_to_image(self, request: GenerateRequest, report: Reporter) -> Generated:
        """`request` is complete (`with_defaults` applied, so `seed` is an int) and validated.
        Returns `request.num_images` RGB images of `request.width` x `request.height`."""
        ...

    def inpaint(self, image: Image.Image, mask: Image.Image, request: InpaintRequest, report: Reporter) -> Generated:
        """`image` is RGB, `mask` is "L" with only 0 and 255, both the same size, already a multiple
        of `spec.size_multiple` (the runner crops and scales). Returns one RGB image of that size
        (request.num_images does not apply); the runner pastes back only the masked pixels.
        Ignores `request.image` and `request.mask`."""
        ...

    def close(self) -> None:
        """Release the model's memory (the pool calls this when it evicts the engine)."""
        ...
