"""Requests, defined once: every field's type, default, bounds and meaning (pydantic dataclasses).

The API bodies (`core.api.schemas`), the CLI flags (`core.cli`), the pages' widget defaults and the
PNG parameters are all derived from these classes, so adding a request field is one line here (plus
its widget). Field names follow diffusers' `__call__` arguments (except `num_images`, the API's name
for `num_images_per_prompt`).

Building a request checks what needs no model (types, bounds) and raises `BadParameterError` with
one line naming the field and the value. `None` means "the model's default": `with_defaults(spec)`
fills those in and `validate(spec)` checks what depends on the model (its sizes, task, image count);
neither ever silently changes a value.

Which fields a model's output depends on is declared by its engine kind (`core.engines`): the cache
key and the PNG parameters hold exactly those (`parameters_read_by`), plus the fields the runner
itself reads for every engine (`RUNNER_FIELDS`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from annotated_types import Ge, Gt, Le, MaxLen
from PIL import Image
from pydantic import AllowInfNan, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic.json_schema import SkipJsonSchema

from core.errors import BadParameterError

if TYPE_CHECKING:
    from core.catalogue import ModelSpec

MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 2000
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MIN_SIDE = 64
DEFAULT_SIDE = 512  # generated when neither the request nor the model's catalogue entry gives a size
# The strength of an edit of the whole image (no mask) on the client APIs: it keeps the picture's
# composition, as AUTOMATIC1111's img2img does at its default denoising strength (also 0.75).
WHOLE_IMAGE_STRENGTH = 0.75
MAX_MASK_PIXELS = 512  # blur / grow / padding bounds, in image pixels
MAX_PADDING = 2048

DECODERS = ("fast", "full")  # fast: the catalogue's tiny autoencoder (TAESD); full: the model's own VAE
Decoder = Literal["fast", "full"]
assert get_args(Decoder) == DECODERS
SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM", "PNDM")
Scheduler = Literal["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM", "PNDM"]
assert get_args(Scheduler) == SCHEDULERS

# Bounds shared by a request's field and the catalogue's default for it (`core.catalogue.ModelSpec`).
Steps = Annotated[int, Ge(1), Le(MAX_STEPS)]
Guidance = Annotated[float, Ge(0.0), Le(MAX_GUIDANCE), AllowInfNan(False)]

# Fields the runner reads for every engine (which model; how the mask is shaped and the region cut):
# they are in every cache key, whatever the engine declares.
RUNNER_FIELDS = frozenset(
    {"model", "mask_blur", "mask_grow", "invert_mask", "padding", "whole_image"}
    | {"left", "top", "right", "bottom", "aspect", "anchor"}  # the frame an outpaint extends to
)


@dataclasses.dataclass(frozen=True)
class Cli:
    """A field's command-line flag when it is not `--field-name` (kept short for people)."""

    flag: str


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


# strict: "5" is not a number and 2.5 is not a step count; unknown fields are typos, refused.
_CONFIG = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)


def _one_line_errors(cls):
    """Building a request (or `dataclasses.replace`) refuses bad values with one `BadParameterError` line."""
    validating_init = cls.__init__

    @functools.wraps(validating_init)
    def __init__(self, *args: Any, **values: Any) -> None:
        try:
            validating_init(self, *args, **values)
        except ValidationError as error:
            raise BadParameterError(describe(error.errors())) from None

    cls.__init__ = __init__
    return cls


@dataclass(frozen=True, config=_CONFIG)
class _Request:
    task = ""  # a class attribute, not a field

    # -- shared fields: every diffusion-style request ------------------------------------------------
    model: Annotated[str, Field(description="A model id from the catalogue (never a path or a hub id).")]
    prompt: Annotated[Annotated[str, MaxLen(MAX_PROMPT_CHARS)], Field(description="What to paint.")] = ""
    negative_prompt: Annotated[
        Annotated[str, MaxLen(MAX_PROMPT_CHARS), Cli("--negative")], Field(description="What to avoid.")
    ] = ""
    num_inference_steps: Annotated[
        Annotated[Steps, Cli("--steps")] | None,
        Field(description="Denoising steps; unset: the model's default."),
    ] = None
    guidance_scale: Annotated[
        Annotated[Guidance, Cli("--guidance")] | None,
        Field(description="How strictly to follow the prompt; unset: the model's default."),
    ] = None
    seed: Annotated[
        Annotated[int, Ge(0), Le(MAX_SEED)] | None,
        Field(description="0..4294967295; unset: a random seed, reported in the result."),
    ] = None
    scheduler: Annotated[Scheduler | None, Field(description="The sampler; unset: the model's default.")] = None
    decoder: Annotated[
        Decoder | None,
        Field(
            description="fast: the tiny autoencoder; full: the model's own VAE; unset: fast on a CPU when there is one."
        ),
    ] = None

    # -- derived views ---------------------------------------------------------------------------------
    def replace(self, **changes: Any):
        """A copy with `changes`, checked like a new request."""
        return dataclasses.replace(self, **changes)

    def _values(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def parameters(self) -> dict[str, Any]:
        """Every field but the pixels (those are keyed by digest), JSON-ready, with the task."""
        values = {name: value for name, value in self._values().items() if name not in ("image", "mask")}
        return {"task": self.task, **values}

    def parameters_read_by(self, spec: ModelSpec) -> dict[str, Any]:
        """The parameters the model's output depends on: its engine's declared fields, the runner's, the
        task and the seed (0 for engines that ignore it). What the cache key and the PNG hold."""
        kind = spec.kind
        return {
            name: value
            for name, value in self.parameters().items()
            if name in ("task", "seed") or name in RUNNER_FIELDS or kind.reads(self.task, name)
        }

    def with_defaults(self, spec: ModelSpec):
        """Model defaults for every None field, and a random seed drawn once if none was given
        (0 for engines that ignore seeds, so repeating a removal is a cache hit)."""
        seed = (random_seed() if self.seed is None else self.seed) if spec.kind.reads(self.task, "seed") else 0
        return self.replace(
            num_inference_steps=spec.default_steps if self.num_inference_steps is None else self.num_inference_steps,
            guidance_scale=float(spec.default_guidance if self.guidance_scale is None else self.guidance_scale),
            seed=seed,
            scheduler=spec.default_scheduler if self.scheduler is None else self.scheduler,
            decoder=spec.default_decoder() if self.decoder is None else self.decoder,
            **self._model_defaults(spec),
        )

    def _model_defaults(self, spec: ModelSpec) -> dict[str, Any]:
        return {}

    def validate(self, spec: ModelSpec) -> None:
        """What depends on the model (the static checks ran when the request was built)."""
        if not spec.supports(self.task):
            raise BadParameterError(self._unsupported(spec))
        self._validate_decoder(spec)

    def _validate_decoder(self, spec: ModelSpec) -> None:
        if self.decoder is None:
            return
        if not spec.kind.reads(self.task, "decoder"):
            raise BadParameterError(f"{spec.name} has no decoder to choose; leave decoder unset")
        if self.decoder == "fast" and not spec.tiny_vae:
            raise BadParameterError(f"{spec.name} has no fast decoder; set tiny_vae in its catalogue entry")


@_one_line_errors
@dataclass(frozen=True, config=_CONFIG)
class GenerateRequest(_Request):
    task = "txt2img"

    width: Annotated[
        Annotated[int, Ge(MIN_SIDE)] | None, Field(description="Pixels; unset: the model's working resolution.")
    ] = None
    height: Annotated[
        Annotated[int, Ge(MIN_SIDE)] | None, Field(description="Pixels; unset: the model's working resolution.")
    ] = None
    num_images: Annotated[
        Annotated[int, Ge(1)], Field(description="How many images, one seed each from the first.")
    ] = 1

    def _model_defaults(self, spec: ModelSpec) -> dict[str, Any]:
        side = spec.working_resolution or DEFAULT_SIDE
        return {
            "width": side if self.width is None else self.width,
            "height": side if self.height is None else self.height,
        }

    def _unsupported(self, spec: ModelSpec) -> str:
        return f"{spec.name} cannot generate images from text; pick a text-to-image model"

    def validate(self, spec: ModelSpec) -> None:
        super().validate(spec)
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


@_one_line_errors
@dataclass(frozen=True, config=_CONFIG)
class InpaintRequest(_Request):
    """`image` is RGB or RGBA (alpha kept for the output), `mask` is "L": 255 repaint, 0 keep."""

    task = "inpaint"

    image: SkipJsonSchema[Image.Image | None] = dataclasses.field(default=None, compare=False, repr=False)
    mask: SkipJsonSchema[Image.Image | None] = dataclasses.field(default=None, compare=False, repr=False)
    strength: Annotated[
        Annotated[float, Gt(0.0), Le(1.0)],
        Field(allow_inf_nan=False, description="1 replaces the masked area; lower keeps more of what was there."),
    ] = 1.0
    mask_blur: Annotated[
        Annotated[int, Ge(0), Le(MAX_MASK_PIXELS)], Field(description="Feather of the final composite, px.")
    ] = 4
    mask_grow: Annotated[
        Annotated[int, Ge(-MAX_MASK_PIXELS), Le(MAX_MASK_PIXELS)],
        Field(description="Grow (or shrink, negative) the mask, px."),
    ] = 0
    invert_mask: Annotated[bool, Field(description="Repaint what is NOT masked.")] = False
    padding: Annotated[Annotated[int, Ge(0), Le(MAX_PADDING)], Field(description="Context around the mask, px.")] = 32
    whole_image: Annotated[bool, Field(description="Process the whole image, not a crop around the mask.")] = False

    def _unsupported(self, spec: ModelSpec) -> str:
        return f"{spec.name} cannot edit images; pick an inpainting model"

    def validate(self, spec: ModelSpec) -> None:
        super().validate(spec)
        if not isinstance(self.image, Image.Image) or self.image.mode not in ("RGB", "RGBA"):
            raise BadParameterError("image must be a loaded RGB or RGBA image")
        if not isinstance(self.mask, Image.Image) or self.mask.mode != "L":
            raise BadParameterError("mask must be a loaded greyscale mask")
        if self.mask.size != self.image.size:
            (mask_width, mask_height), (width, height) = self.mask.size, self.image.size
            raise BadParameterError(f"mask is {mask_width}x{mask_height} but the image is {width}x{height}")
        steps = self.num_inference_steps
        if steps is not None and spec.kind.progress == "steps" and steps * self.strength < 1:
            raise BadParameterError(
                f"num_inference_steps x strength must be at least 1, got {steps} x {self.strength:g}"
            )


@_one_line_errors
@dataclass(frozen=True, config=_CONFIG)
class OutpaintRequest(_Request):
    """Extend `image` (RGB or RGBA) by `left`/`top`/`right`/`bottom` pixels, or to `aspect` ("16:9")
    with the photo at `anchor` (see core.outpaint.ANCHORS). `with_defaults` turns an aspect into
    pixels, so both spellings of one frame share a cache key; `strength` below 1 keeps the pre-fill's
    colours as the diffusion's start."""

    task = "outpaint"

    image: SkipJsonSchema[Image.Image | None] = dataclasses.field(default=None, compare=False, repr=False)
    left: Annotated[int, Field(description="Pixels to add on the left.")] = 0
    top: Annotated[int, Field(description="Pixels to add at the top.")] = 0
    right: Annotated[int, Field(description="Pixels to add on the right.")] = 0
    bottom: Annotated[int, Field(description="Pixels to add at the bottom.")] = 0
    aspect: Annotated[str | None, Field(description='Extend to this aspect instead, e.g. "16:9".')] = None
    anchor: Annotated[str, Field(description="Where the photo sits when extending to an aspect.")] = "center"
    strength: Annotated[
        Annotated[float, Gt(0.0), Le(1.0)],
        Field(allow_inf_nan=False, description="Below 1 keeps the pre-fill's colours as the diffusion's start."),
    ] = 0.9

    def sides(self):
        from core.outpaint import Sides

        return Sides(left=self.left, top=self.top, right=self.right, bottom=self.bottom)

    def with_defaults(self, spec: ModelSpec) -> OutpaintRequest:
        filled = super().with_defaults(spec)
        if self.aspect is None:
            return filled
        from core.outpaint import sides_for_aspect

        sides = sides_for_aspect(self.image.size, self.aspect, self.anchor)
        return filled.replace(
            left=sides.left, top=sides.top, right=sides.right, bottom=sides.bottom, aspect=None, anchor="center"
        )

    def validate(self, spec: ModelSpec) -> None:
        from core.outpaint import ANCHORS, parse_aspect

        if not spec.supports("inpaint"):
            raise BadParameterError(f"{spec.name} cannot edit images; pick an inpainting model")
        self._validate_decoder(spec)
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
        if steps is not None and spec.kind.progress == "steps" and steps * self.strength < 1:
            raise BadParameterError(
                f"num_inference_steps x strength must be at least 1, got {steps} x {self.strength:g}"
            )


MAX_POINTS = 64


@dataclasses.dataclass(frozen=True)
class SegmentRequest:
    """Select an object in `image` by clicks and/or a box (photo pixels). `points` are (x, y, include):
    include True marks the object, False what is not part of it; `box` is (left, top, right, bottom)."""

    model: str
    image: Image.Image | None = dataclasses.field(default=None, compare=False, repr=False)
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


def fields(request_type: type[_Request]) -> dict[str, FieldInfo]:
    """The request's fields, in order: name -> type, default, bounds, description (and `Cli` flag)."""
    return dict(request_type.__pydantic_fields__)


def default(request_type: type[_Request], name: str) -> Any:
    """A field's default, for widgets and flags that start from it."""
    return fields(request_type)[name].default


# Errors in a value (not its type or the body's shape): the API answers these 400 bad_parameter.
VALUE_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "finite_number",
        "literal_error",
        "string_too_long",
        "string_unicode",
    }
)


def describe(errors: list[dict[str, Any]], known: Mapping[str, FieldInfo] | None = None) -> str:
    """Pydantic's errors as one line in the requests' words (or those of `known` fields, e.g. a catalogue
    entry's): `field must be ..., got value`."""
    if known is None:
        known = {**fields(GenerateRequest), **fields(InpaintRequest), **fields(OutpaintRequest)}
    parts = []
    for detail in errors[:3]:
        names = [str(part) for part in detail.get("loc", ()) if str(part) in known]
        name = names[-1] if names else ".".join(str(part) for part in detail.get("loc", ()) if part != "body")
        if detail["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            parts.append(f"{name}: unknown field")
        elif detail["type"] == "missing":
            parts.append(f"{name} is required")
        elif detail["type"] == "string_unicode":  # a lone surrogate ("\ud800" in JSON, bad bytes in argv)
            parts.append(f"{name} is not valid text: it holds a lone surrogate (broken UTF-16)")
        elif detail["type"] == "string_too_long":
            length, limit = len(detail.get("input", "")), detail.get("ctx", {}).get("max_length")
            parts.append(f"{name} is {length} characters; the limit is {limit}")
        elif detail["type"] == "value_error":  # a validator's own words: "must ..." after the field's name
            said = str(detail.get("ctx", {}).get("error", detail.get("msg", "is not valid")))
            parts.append(f"{name} {said}" if name else said)
        elif name in known:
            parts.append(f"{name} {rule(known[name])}, got {_shown(detail.get('input'))}")
        else:
            parts.append(f"{name or 'request'}: {detail.get('msg', 'invalid')}")
    more = len(errors) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _shown(value: Any) -> str:
    """The value sent, short enough for one line."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def rule(field: FieldInfo) -> str:
    """What a field accepts, in words, from its annotation and bounds."""
    bounds: dict[str, Any] = {}
    for constraint in annotations_of(field):
        for attribute in ("ge", "gt", "le", "max_length"):
            if getattr(constraint, attribute, None) is not None:
                bounds[attribute] = getattr(constraint, attribute)
    kinds = {arg for arg in leaf_types(field.annotation)}
    if "max_length" in bounds:
        return f"must be text of at most {bounds['max_length']} characters"
    choices = [arg for arg in leaf_types(field.annotation) if isinstance(arg, str)]
    if choices:
        return f"must be one of {', '.join(choices)}"
    if bool in kinds:
        return "must be true or false"
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le")
    if int in kinds and float not in kinds:
        if low is not None and high is not None:
            return f"must be a whole number from {low} to {high}"
        return f"must be a whole number of at least {low}" if low is not None else "must be a whole number"
    if float in kinds:
        bracket = "(" if "gt" in bounds else "["
        if low is not None and high is not None:
            return f"must be a number in {bracket}{low:g}, {high:g}]"
        return "must be a finite number"
    if str in kinds:
        return "must be text"
    return "is not valid"


def annotations_of(field: FieldInfo) -> list[Any]:
    """A field's annotation objects: its bounds, and `Cli` when it has a flag of its own."""
    found = list(field.metadata)
    for arg in get_args(field.annotation):  # Annotated[...] | None keeps the bounds inside the union
        found += list(getattr(arg, "__metadata__", ()))
    return found


def leaf_types(annotation: Any) -> list[Any]:
    """The plain types (and Literal choices) a field accepts: `Annotated[int, Ge(1)] | None` -> [int, NoneType]."""
    args = get_args(annotation)
    if not args:
        return [annotation]
    if getattr(annotation, "__metadata__", None) is not None:  # Annotated[T, ...]
        return leaf_types(args[0])
    if getattr(annotation, "__origin__", None) is Literal:
        return list(args)
    return [leaf for arg in args for leaf in leaf_types(arg)]


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and low <= value <= high):
        raise BadParameterError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadParameterError(f"{name} must be a whole number from {low} to {high}, got {value!r}")


__all__ = [
    "Cli",
    "annotations_of",
    "leaf_types",
    "GenerateRequest",
    "InpaintRequest",
    "OutpaintRequest",
    "SegmentRequest",
    "MAX_SEED",
    "RUNNER_FIELDS",
    "DECODERS",
    "SCHEDULERS",
    "VALUE_ERRORS",
    "default",
    "describe",
    "fields",
    "image_parameters",
    "image_seed",
    "random_seed",
    "rule",
]
