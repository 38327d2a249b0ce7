"""Frozen request dataclasses: one schema for the UI, the CLI, the API and the batch runner.

Field names follow diffusers' `__call__` arguments (except `num_images`, the API's name for
`num_images_per_prompt`). `None` means "the model's default"; `with_defaults(spec)` fills those
in and `validate(spec)` refuses bad values with the offending value in the message — it never
silently changes one.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from core.catalogue import ModelSpec
from core.errors import BadParameterError

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MIN_SIDE = 64
MAX_MASK_PIXELS = 512  # blur / grow / padding bounds, in image pixels
MAX_PADDING = 2048

DECODERS = ("fast", "full")  # fast: the catalogue's tiny autoencoder (TAESD); full: the model's own VAE
SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM", "PNDM")


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def image_seed(seed: int, index: int) -> int:
    """The seed of image `index` of a request: image i of a batch starts from seed + i, so one
    image of a batch can be made again on its own (up to batch rounding differences)."""
    return (seed + index) % (MAX_SEED + 1)


def image_parameters(parameters: dict[str, Any], index: int) -> dict[str, Any]:
    """What image `index` of a run records in its PNG: its own seed, as a run of one image, so the
    parameters read back from that one file make that one image again."""
    count = parameters.get("num_images", 1)
    if not isinstance(count, int) or count <= 1:
        return parameters
    flags = parameters.get("filtered")
    one = {**parameters, "seed": image_seed(parameters["seed"], index), "num_images": 1}
    if isinstance(flags, list) and index < len(flags):
        one["filtered"] = [flags[index]]
    return one


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise BadParameterError(f"{name} must be a whole number from {low} to {high}, got {value!r}")


def _check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise BadParameterError(f"{name} must be a number in {bracket}{low:g}, {high:g}], got {value!r}")


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise BadParameterError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise BadParameterError(f"{name} is {len(value)} characters; the limit is {MAX_PROMPT_CHARS}")
    try:
        value.encode("utf-8")  # a lone surrogate ("\ud800" in JSON, bad bytes in argv) is no text
    except UnicodeEncodeError:
        raise BadParameterError(f"{name} is not valid text: it holds a lone surrogate (broken UTF-16)") from None


@dataclass(frozen=True)
class _Sampling:
    """Fields shared by every diffusion request."""

    model: str
    prompt: str = ""
    negative_prompt: str = ""
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    scheduler: str | None = None
    decoder: str | None = None  # DECODERS; None: fast on a CPU when the model has a tiny autoencoder, else full

    def with_defaults(self, spec: ModelSpec):
        """Model defaults for every None field, and a random seed drawn once if none was given
        (0 for engines that ignore seeds, so repeating a removal is a cache hit)."""
        return dataclasses.replace(
            self,
            num_inference_steps=spec.default_steps if self.num_inference_steps is None else self.num_inference_steps,
            guidance_scale=float(spec.default_guidance if self.guidance_scale is None else self.guidance_scale),
            seed=(random_seed() if self.seed is None else self.seed) if spec.generative else 0,
            scheduler=spec.default_scheduler if self.scheduler is None else self.scheduler,
            decoder=spec.default_decoder() if self.decoder is None else self.decoder,
        )

    def _validate_sampling(self, spec: ModelSpec) -> None:
        _check_text("prompt", self.prompt)
        _check_text("negative_prompt", self.negative_prompt)
        if self.num_inference_steps is not None:
            _check_int("num_inference_steps", self.num_inference_steps, 1, MAX_STEPS)
        if self.guidance_scale is not None:
            _check_float("guidance_scale", self.guidance_scale, 0.0, MAX_GUIDANCE)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise BadParameterError(f"scheduler must be one of {', '.join(SCHEDULERS)}; got {self.scheduler!r}")
        if self.decoder is not None:
            if self.decoder not in DECODERS:
                raise BadParameterError(f"decoder must be one of {', '.join(DECODERS)}; got {self.decoder!r}")
            if spec.engine != "diffusers":
                raise BadParameterError(f"{spec.name} has no decoder to choose; leave decoder unset")
            if self.decoder == "fast" and not spec.tiny_vae:
                raise BadParameterError(f"{spec.name} has no fast decoder; set tiny_vae in its catalogue entry")


@dataclass(frozen=True)
class GenerateRequest(_Sampling):
    width: int | None = None
    height: int | None = None
    num_images: int = 1

    task = "txt2img"

    def with_defaults(self, spec: ModelSpec) -> GenerateRequest:
        filled = super().with_defaults(spec)
        side = spec.working_resolution or 512
        return dataclasses.replace(
            filled,
            width=side if self.width is None else self.width,
            height=side if self.height is None else self.height,
        )

    def validate(self, spec: ModelSpec) -> None:
        if not spec.supports("txt2img"):
            raise BadParameterError(f"{spec.name} cannot generate images from text; pick a text-to-image model")
        self._validate_sampling(spec)
        if not self.prompt.strip():
            raise BadParameterError("prompt is empty; describe the image to generate")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            _check_int(name, value, MIN_SIDE, spec.max_side)
            if value % spec.size_multiple:
                raise BadParameterError(
                    f"{name} must be a multiple of {spec.size_multiple} for {spec.name}, got {value}"
                )
        _check_int("num_images", self.num_images, 1, spec.max_images)

    def parameters(self) -> dict[str, Any]:
        return {"task": self.task, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class InpaintRequest(_Sampling):
    """`image` is RGB or RGBA (alpha kept for the output), `mask` is "L": 255 repaint, 0 keep."""

    image: Image.Image | None = field(default=None, compare=False, repr=False)
    mask: Image.Image | None = field(default=None, compare=False, repr=False)
    strength: float = 1.0
    mask_blur: int = 4
    mask_grow: int = 0
    invert_mask: bool = False
    padding: int = 32
    whole_image: bool = False

    task = "inpaint"

    def with_defaults(self, spec: ModelSpec) -> InpaintRequest:
        return dataclasses.replace(
            super().with_defaults(spec), strength=float(self.strength)
        )  # 1 and 1.0: one cache key

    def validate(self, spec: ModelSpec) -> None:
        if not spec.supports("inpaint"):
            raise BadParameterError(f"{spec.name} cannot edit images; pick an inpainting model")
        self._validate_sampling(spec)
        _check_float("strength", self.strength, 0.0, 1.0, low_open=True)
        _check_int("mask_blur", self.mask_blur, 0, MAX_MASK_PIXELS)
        _check_int("mask_grow", self.mask_grow, -MAX_MASK_PIXELS, MAX_MASK_PIXELS)
        _check_int("padding", self.padding, 0, MAX_PADDING)
        for name in ("invert_mask", "whole_image"):
            if not isinstance(getattr(self, name), bool):
                raise BadParameterError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.image, Image.Image) or self.image.mode not in ("RGB", "RGBA"):
            raise BadParameterError("image must be a loaded RGB or RGBA image")
        if not isinstance(self.mask, Image.Image) or self.mask.mode != "L":
            raise BadParameterError("mask must be a loaded greyscale mask")
        if self.mask.size != self.image.size:
            raise BadParameterError(
                f"mask is {self.mask.size[0]}x{self.mask.size[1]} but the image is {self.image.size[0]}x{self.image.size[1]}"
            )
        steps = self.num_inference_steps
        if steps is not None and spec.engine == "diffusers" and steps * self.strength < 1:
            raise BadParameterError(
                f"num_inference_steps x strength must be at least 1, got {steps} x {self.strength:g}"
            )

    def parameters(self) -> dict[str, Any]:
        """Every field but the pixels (those are keyed by digest), JSON-ready."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("image", "mask")}
        return {"task": self.task, **values}


@dataclass(frozen=True)
class OutpaintRequest(_Sampling):
    """Extend `image` (RGB or RGBA) by `left`/`top`/`right`/`bottom` pixels, or to `aspect` ("16:9")
    with the photo at `anchor` (see core.outpaint.ANCHORS). `with_defaults` turns an aspect into
    pixels, so both spellings of one frame share a cache key; `strength` below 1 keeps the pre-fill's
    colours as the diffusion's start."""

    image: Image.Image | None = field(default=None, compare=False, repr=False)
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0
    aspect: str | None = None
    anchor: str = "center"
    strength: float = 0.9

    task = "outpaint"

    def sides(self):
        from core.outpaint import Sides

        return Sides(left=self.left, top=self.top, right=self.right, bottom=self.bottom)

    def with_defaults(self, spec: ModelSpec) -> OutpaintRequest:
        filled = super().with_defaults(spec)
        if self.aspect is not None:
            from core.outpaint import sides_for_aspect

            sides = sides_for_aspect(self.image.size, self.aspect, self.anchor)
            filled = dataclasses.replace(
                filled,
                left=sides.left,
                top=sides.top,
                right=sides.right,
                bottom=sides.bottom,
                aspect=None,
                anchor="center",
            )
        return dataclasses.replace(filled, strength=float(self.strength))

    def validate(self, spec: ModelSpec) -> None:
        from core.outpaint import ANCHORS, parse_aspect

        if not spec.supports("inpaint"):
            raise BadParameterError(f"{spec.name} cannot edit images; pick an inpainting model")
        self._validate_sampling(spec)
        _check_float("strength", self.strength, 0.0, 1.0, low_open=True)
        if not isinstance(self.image, Image.Image) or self.image.mode not in ("RGB", "RGBA"):
            raise BadParameterError("image must be a loaded RGB or RGBA image")
        if self.anchor not in ANCHORS:
            raise BadParameterError(f"anchor must be one of {', '.join(ANCHORS)}; got {self.anchor!r}")
        if self.aspect is not None:
            if any((self.left, self.top, self.right, self.bottom)):
                raise BadParameterError("give either pixels per side or a target aspect, not both")
            parse_aspect(self.aspect)
        else:
            self.sides().check()
        steps = self.num_inference_steps
        if steps is not None and spec.engine == "diffusers" and steps * self.strength < 1:
            raise BadParameterError(
                f"num_inference_steps x strength must be at least 1, got {steps} x {self.strength:g}"
            )

    def parameters(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "image"}
        return {"task": self.task, **values}


MAX_POINTS = 64


@dataclass(frozen=True)
class SegmentRequest:
    """Select an object in `image` by clicks and/or a box (photo pixels). `points` are (x, y, include):
    include True marks the object, False what is not part of it; `box` is (left, top, right, bottom)."""

    model: str
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    points: tuple[tuple[float, float, bool], ...] = ()
    box: tuple[float, float, float, float] | None = None

    task = "segment"

    def validate(self, spec: ModelSpec) -> None:
        if not spec.supports("segment"):
            raise BadParameterError(f"{spec.name} cannot select objects; pick a segmentation model")
        if not isinstance(self.image, Image.Image) or self.image.mode not in ("RGB", "RGBA"):
            raise BadParameterError("image must be a loaded RGB or RGBA image")
        width, height = self.image.size
        if not self.points and self.box is None:
            raise BadParameterError("click at least one point on the object, or draw a box around it")
        if len(self.points) > MAX_POINTS:
            raise BadParameterError(f"at most {MAX_POINTS} points, got {len(self.points)}")
        for point in self.points:
            if not (isinstance(point, tuple) and len(point) == 3 and isinstance(point[2], bool)):
                raise BadParameterError(f"a point is (x, y, include), got {point!r}")
            x, y, _ = point
            _check_float("point x", x, 0, width)
            _check_float("point y", y, 0, height)
        if self.box is not None:
            if not (isinstance(self.box, tuple) and len(self.box) == 4):
                raise BadParameterError(f"box is (left, top, right, bottom), got {self.box!r}")
            for name, value, limit in zip(
                ("left", "top", "right", "bottom"), self.box, (width, height) * 2, strict=True
            ):
                _check_float(f"box {name}", value, 0, limit)
            left, top, right, bottom = self.box
            if not (left < right and top < bottom):
                raise BadParameterError(f"box needs left < right and top < bottom, got {self.box!r}")
        elif not any(include for _, _, include in self.points):
            raise BadParameterError("every point excludes: add a point on the object, or a box")
