"""OpenAI's images API shapes (`/v1/images/generations`, `/v1/images/edits`), mapped onto our requests.

Pure translation, no HTTP: `openai_routes.py` serves it. OpenAI's mask rule is the reverse of ours:
its mask's fully transparent pixels are the area to edit; without a mask, the image's own transparent
pixels are (DALL-E 2's rule), and an image with none is edited as a whole.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from core import masks
from core.api.runs import default_model
from core.catalogue import Catalogue, ModelSpec
from core.errors import BadMaskError, BadParameterError, UnknownModelError
from core.images import load_image
from core.requests import MAX_SEED, WHOLE_IMAGE_STRENGTH, GenerateRequest, InpaintRequest, default, random_seed
from core.settings import ImageLimits

# Our request fields -> OpenAI's names for them (refusals name the field as the client sent it).
FIELD_NAMES = {"width": "size", "height": "size", "num_images": "n", "prompt": "prompt", "seed": "seed"}
MAX_N = 10  # OpenAI's own bound; a model's max_images is usually lower and is checked too
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
# Model names of OpenAI's own that apps send by default: they get our default model.
_OPENAI_MODELS = ("dall-e-", "gpt-image-")
# How far the composite's feather reaches beyond a mask edge: 3 sigma of the default blur.
_FEATHER_REACH = 3 * default(InpaintRequest, "mask_blur")


class ParameterError(BadParameterError):
    """A bad parameter, naming the field (OpenAI's errors carry it as `param`)."""

    def __init__(self, message: str, param: str | None):
        super().__init__(message)
        self.param = param


class GenerationBody(BaseModel):
    model_config = ConfigDict(extra="ignore")  # quality, style, user, background...: accepted and ignored

    prompt: str
    model: str | None = None
    n: int | None = Field(None, description="1..10 (and at most the model's max_images)")
    size: str | None = Field(None, description="'WxH' or 'auto' (the model's default)")
    response_format: Literal["url", "b64_json"] | None = None
    stream: bool | None = None
    seed: int | None = Field(None, description="ours, not OpenAI's: the same seed gives the same pixels")


def resolve_model(catalogue: Catalogue, name: str | None, task: str) -> ModelSpec:
    """A catalogue id; no model, or one of OpenAI's own names (dall-e-3, gpt-image-1...), means our
    default for the task (what a client naming no model gets on every surface)."""
    if not name or name.lower().startswith(_OPENAI_MODELS):
        return default_model(catalogue, task)
    try:
        spec = catalogue.get(name)
    except UnknownModelError:
        raise UnknownModelError("unknown model; GET /api/v1/models lists the model ids") from None
    if not spec.supports(task):
        raise ParameterError(
            f"{spec.name} cannot do {'image generation' if task == 'txt2img' else 'image edits'}", "model"
        )
    return spec


def parse_size(size: str | None) -> tuple[int, int] | None:
    """'WxH' -> (W, H); None or 'auto' -> None (the model's default)."""
    if size is None or size.strip().lower() in ("", "auto"):
        return None
    match = _SIZE.match(size)
    if match is None:
        raise ParameterError(f"size must be 'WIDTHxHEIGHT' (e.g. 512x512) or 'auto', got {size[:40]!r}", "size")
    return int(match[1]), int(match[2])


def parse_n(n: Any, spec: ModelSpec) -> int:
    if n is None or n == "":
        return default(GenerateRequest, "num_images")  # 1, as OpenAI's own default
    try:
        count = int(n)
    except (TypeError, ValueError):
        raise ParameterError(f"n must be a whole number, got {str(n)[:20]!r}", "n") from None
    if not 1 <= count <= min(MAX_N, spec.max_images):
        raise ParameterError(f"n must be from 1 to {min(MAX_N, spec.max_images)} for {spec.name}, got {count}", "n")
    return count


def parse_seed(seed: str | None) -> int | None:
    """Our `seed` extension as a form field (edits); None or "" draw one."""
    if seed is None or not seed.strip():
        return None
    try:
        value = int(seed)
    except ValueError:
        raise ParameterError(f"seed must be a whole number from 0 to {MAX_SEED}, got {seed[:20]!r}", "seed") from None
    if not 0 <= value <= MAX_SEED:
        raise ParameterError(f"seed must be a whole number from 0 to {MAX_SEED}, got {value}", "seed")
    return value


def generate_request(body: GenerationBody, spec: ModelSpec) -> GenerateRequest:
    if body.stream:
        raise ParameterError("streaming is not supported; leave stream unset", "stream")
    if not body.prompt.strip():
        raise ParameterError("prompt is empty; describe the image to generate", "prompt")
    size = parse_size(body.size)
    width, height = size if size is not None else (None, None)
    return GenerateRequest(
        model=spec.id, prompt=body.prompt, width=width, height=height, num_images=parse_n(body.n, spec), seed=body.seed
    )


def edit_mask(mask_file: bytes | None, image: Image.Image, limits: ImageLimits) -> Image.Image | None:
    """Our mask ("L", 255 = repaint) by OpenAI's rule, or None to edit the whole image.

    With a mask file: its fully transparent pixels (alpha 0) are the area to edit; it needs an alpha
    channel. Without one: the image's own fully transparent pixels, if it has any."""
    if mask_file is None:
        if image.mode != "RGBA":  # load_image keeps RGBA only when some pixel is not opaque
            return None
        return _transparent(image)
    try:
        loaded = load_image(mask_file, limits)
    except Exception as error:  # BadImageError: say it is the mask
        raise BadMaskError(f"unusable mask: {getattr(error, 'message', 'unreadable')}") from None
    if loaded.mode != "RGBA":
        raise BadMaskError(
            "the mask has no transparent pixels: OpenAI's rule is that fully transparent pixels (alpha 0) "
            "mark the area to edit, so send a PNG with an alpha channel"
        )
    return masks.mask_from_image(_transparent(loaded), image.size, limits)


def _transparent(image: Image.Image) -> Image.Image:
    return image.getchannel("A").point(lambda alpha: 255 if alpha == 0 else 0)


def edit_requests(
    spec: ModelSpec, image: Image.Image, mask: Image.Image | None, prompt: str, n: int, seed: int | None = None
) -> list[InpaintRequest]:
    """One request per image asked for (seeds seed, seed + 1, ...); results keep the image's size.

    OpenAI repaints every pixel it marks, so the composite's feathered edge lies just outside the
    marked area (the mask grows by the feather's reach): a transparent hole is filled opaque to its edge."""
    if not prompt.strip():
        raise ParameterError("prompt is empty; describe the edit", "prompt")
    whole = mask is None
    seed = random_seed() if seed is None else seed
    return [
        InpaintRequest(
            model=spec.id,
            image=image,
            mask=Image.new("L", image.size, 255) if whole else mask,
            prompt=prompt,
            seed=(seed + index) % (MAX_SEED + 1),
            whole_image=whole,
            mask_grow=0 if whole else _FEATHER_REACH,
            **({"strength": WHOLE_IMAGE_STRENGTH} if whole and spec.generative else {}),
        )
        for index in range(n)
    ]


__all__ = [
    "GenerationBody",
    "ParameterError",
    "edit_mask",
    "edit_requests",
    "generate_request",
    "parse_n",
    "parse_seed",
    "parse_size",
    "resolve_model",
]
