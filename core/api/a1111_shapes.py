"""AUTOMATIC1111's request and response shapes, mapped onto the studio's own requests and results.

Pure translation, no HTTP: `a1111_routes.py` serves it. A1111's names go in (`steps`, `cfg_scale`,
`sampler_name` + `scheduler`, `denoising_strength`, `inpaint_full_res`...), core requests come out;
a finished run goes back as A1111's `info` JSON (seed, all_seeds, infotexts...). Like A1111, fields
we have no use for (`alwayson_scripts`, `restore_faces`, hires fix...) are accepted and ignored, and
a sampler we lack falls back to the model's default with a warning instead of failing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

import core
from core.catalogue import Catalogue, ModelSpec
from core.errors import BadParameterError, UnknownModelError
from core.provenance import parameters_text
from core.requests import (
    MAX_SEED,
    WHOLE_IMAGE_STRENGTH,
    GenerateRequest,
    InpaintRequest,
    image_parameters,
    image_seed,
    random_seed,
)
from core.runner import Result

# A1111 sampler names (and the aliases its API accepts) -> our scheduler names (core.requests.SCHEDULERS).
# Listed in A1111's order; "PLMS" is A1111's name for diffusers' PNDM.
SAMPLERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "DPM++ 2M": ("DPM++ 2M", ("k_dpmpp_2m",)),
    "Euler a": ("Euler a", ("k_euler_a", "k_euler_ancestral")),
    "Euler": ("Euler", ("k_euler",)),
    "LCM": ("LCM", ("k_lcm",)),
    "DDIM": ("DDIM", ()),
    "PLMS": ("PNDM", ("pndm",)),
    "UniPC": ("UniPC", ()),
}
KARRAS = "karras"
AUTOMATIC = "automatic"
# A1111's schedule types that we can honour: "automatic" (the sampler's own) and Karras (DPM++ 2M only).
SCHEDULES = ({"name": AUTOMATIC, "label": "Automatic"}, {"name": KARRAS, "label": "Karras"})
_KARRAS_OF = {"DPM++ 2M": "DPM++ 2M Karras"}
_BY_NAME = {name.lower(): name for name in SAMPLERS} | {
    alias.lower(): name for name, (_, aliases) in SAMPLERS.items() for alias in aliases
}
_A1111_OF = {ours: name for name, (ours, _) in SAMPLERS.items()} | {ours: base for base, ours in _KARRAS_OF.items()}

# Our request fields -> A1111's names for them, so refusals speak A1111's language.
FIELD_NAMES = {
    "num_inference_steps": "steps",
    "guidance_scale": "cfg_scale",
    "strength": "denoising_strength",
    "padding": "inpaint_full_res_padding",
    "num_images": "batch_size x n_iter",
}
# A1111 img2img's own default denoising strength (its API contract: a client that sends none gets it);
# it is also ours for edits of the whole image on every client API, so it is read from there.
DEFAULT_DENOISING_STRENGTH = WHOLE_IMAGE_STRENGTH


# -- request bodies: A1111's field names; anything else is accepted and ignored --------------------


class Txt2ImgBody(BaseModel):
    """A1111's txt2img body. Where A1111 applies a default of its own (steps 50, cfg_scale 7, 512x512) we
    leave the field unset, so the model's catalogue default applies (50 steps of SD-Turbo would be 50x the
    work for nothing); clients such as webuiapi send their own values anyway. Unset edit fields (mask_blur,
    inpaint_full_res_padding) likewise take core/requests.py's defaults, never a copy of them: A1111's
    mask_blur is 4 like ours; its API's padding is 0 where its UI's (and ours) is 32, the context a crop
    needs to blend in."""

    model_config = ConfigDict(extra="ignore")  # A1111 ignores what it does not know; so do we

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = Field(-1, description="-1: a random seed, reported in info")
    steps: int | None = Field(None, description="null: the model's default")
    cfg_scale: float | None = Field(None, description="null: the model's default")
    width: int | None = Field(None, description="null: the model's working resolution")
    height: int | None = Field(None, description="null: the model's working resolution")
    batch_size: int = 1
    n_iter: int = 1
    sampler_name: str | None = None
    sampler_index: str | None = None  # A1111's older name for sampler_name
    scheduler: str | None = None
    override_settings: dict[str, Any] = Field(default_factory=dict)
    send_images: bool = True

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter

    def checkpoint(self) -> str | None:
        """override_settings.sd_model_checkpoint, when set (None or "" mean the server's model)."""
        value = self.override_settings.get("sd_model_checkpoint")
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise BadParameterError("sd_model_checkpoint must be a model title from GET /sdapi/v1/sd-models")
        return value


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] = Field(min_length=1, description="base64 images (data: URLs accepted); the first is used")
    mask: str | None = Field(None, description="base64 mask, white = repaint; none: the whole image")
    mask_blur: int | None = Field(None, description="null: our default (core/requests.py), 4 like A1111's")
    inpainting_fill: int = Field(0, ge=0, le=3, description="accepted; masked content always starts from the image")
    inpaint_full_res: bool = Field(True, description="true: work on the area around the mask (ours: the crop)")
    inpaint_full_res_padding: int | None = Field(None, description="null: our default (core/requests.py), 32")
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    denoising_strength: float = DEFAULT_DENOISING_STRENGTH
    resize_mode: int = Field(0, ge=0, le=3, description="accepted; results keep the image's own size")
    include_init_images: bool = False


# -- samplers -------------------------------------------------------------------------------------


def scheduler_for(sampler: str | None, schedule: str | None) -> tuple[str | None, list[str]]:
    """A1111's (sampler_name, scheduler) -> our scheduler name (None: the model's default) and warnings.

    "DPM++ 2M Karras" (A1111 before 1.9) and ("DPM++ 2M", "karras") (1.9 and later) are one thing.
    What we lack falls back to the model's default, as A1111 falls back to its default sampler."""
    warnings: list[str] = []
    name = (sampler or "").strip()
    schedule = (schedule or "").strip().lower()
    if name.lower().endswith(" karras"):
        name, schedule = name[: -len(" karras")].strip(), KARRAS
    if not name:
        if schedule not in ("", AUTOMATIC):
            warnings.append(f"schedule type {schedule!r} needs a sampler; used the model's default")
        return None, warnings
    known = _BY_NAME.get(name.lower())
    if known is None:
        warnings.append(f"sampler {name!r} is not available here; used the model's default sampler")
        return None, warnings
    ours = SAMPLERS[known][0]
    if schedule == KARRAS:
        if known in _KARRAS_OF:
            return _KARRAS_OF[known], warnings
        warnings.append(f"the Karras schedule is only available with DPM++ 2M here; used {known} with its own schedule")
    elif schedule not in ("", AUTOMATIC):
        warnings.append(f"schedule type {schedule!r} is not available here; used {known} with its own schedule")
    return ours, warnings


def a1111_sampler(ours: str | None) -> tuple[str, str]:
    """Our scheduler name -> A1111's (sampler_name, scheduler label), for `info` and infotexts."""
    if ours is None:
        return "Default", "Automatic"
    base = _A1111_OF.get(ours, ours)
    return base, "Karras" if ours in _KARRAS_OF.values() else "Automatic"


def sampler_list() -> list[dict[str, Any]]:
    return [
        {"name": name, "aliases": list(aliases), "options": {"scheduler": KARRAS} if name in _KARRAS_OF else {}}
        for name, (_, aliases) in SAMPLERS.items()
    ]


def schedule_list() -> list[dict[str, Any]]:
    return [{**schedule, "aliases": None, "default_rho": -1, "need_inner_model": False} for schedule in SCHEDULES]


# -- models ---------------------------------------------------------------------------------------


def model_hash(spec: ModelSpec) -> str:
    """sha256 of the model's source (hub id and revision, or file): names the catalogue entry, not a weights file."""
    return _source_hash(spec.source)


def _source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def sd_model_item(spec: ModelSpec) -> dict[str, Any]:
    digest = model_hash(spec)
    return {
        "title": spec.id,
        "model_name": spec.name,
        "hash": digest[:10],
        "sha256": digest,
        "filename": spec.source,  # never a server path: sources name local files by digest
        "config": None,
    }


def find_model(catalogue: Catalogue, name: str) -> ModelSpec:
    """A checkpoint name as A1111 clients send it: our id (any case, with or without A1111's
    " [hash]" suffix or a file extension), or the model's display name."""
    wanted = name.strip()
    if wanted.endswith("]") and " [" in wanted:
        wanted = wanted[: wanted.rindex(" [")]
    for suffix in (".safetensors", ".ckpt"):
        wanted = wanted.removesuffix(suffix)
    lowered = wanted.lower()
    for spec in catalogue:
        if lowered in (spec.id.lower(), spec.name.lower()):
            return spec
    raise UnknownModelError("unknown model; GET /sdapi/v1/sd-models lists the models (their titles)")


# -- building our requests ------------------------------------------------------------------------


def _seed(body: Txt2ImgBody) -> int | None:
    if body.seed == -1:
        return None
    if not 0 <= body.seed <= MAX_SEED:
        raise BadParameterError(f"seed must be -1 (random) or a whole number from 0 to {MAX_SEED}, got {body.seed}")
    return body.seed


def _check_count(body: Txt2ImgBody, spec: ModelSpec) -> None:
    if body.batch_size < 1 or body.n_iter < 1:
        raise BadParameterError("batch_size and n_iter must be at least 1")
    if body.image_count > spec.max_images:
        raise BadParameterError(
            f"batch_size x n_iter is {body.image_count}; {spec.name} makes at most {spec.max_images} images per request"
        )


def generate_request(body: Txt2ImgBody, spec: ModelSpec) -> tuple[GenerateRequest, list[str]]:
    """A txt2img body -> one GenerateRequest for all its images (image i uses seed + i, as in A1111)."""
    _check_count(body, spec)
    scheduler, warnings = scheduler_for(body.sampler_name or body.sampler_index, body.scheduler)
    request = GenerateRequest(
        model=spec.id,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        num_inference_steps=body.steps,
        guidance_scale=body.cfg_scale,
        seed=_seed(body),
        scheduler=scheduler,
        width=body.width,
        height=body.height,
        num_images=body.image_count,
    )
    return request, warnings


def inpaint_requests(
    body: Img2ImgBody, spec: ModelSpec, image: Image.Image, mask: Image.Image | None
) -> tuple[list[InpaintRequest], list[str]]:
    """An img2img body with its decoded image and mask (None: the whole image) -> one InpaintRequest
    per image asked for, seeds seed, seed + 1, ... as A1111 numbers them. The result keeps the image's
    size (width, height and resize_mode do not resize it), so unmasked pixels stay byte-identical."""
    _check_count(body, spec)
    scheduler, warnings = scheduler_for(body.sampler_name or body.sampler_index, body.scheduler)
    if len(body.init_images) > 1:
        warnings.append(f"{len(body.init_images)} init_images sent; only the first is used")
    whole = mask is None
    if whole:
        mask = Image.new("L", image.size, 255)
    seed = _seed(body)
    if seed is None and body.image_count > 1:
        seed = random_seed()  # drawn once, so the images are seed, seed + 1, ...
    fields: dict[str, Any] = {
        "model": spec.id,
        "image": image,
        "mask": mask,
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "num_inference_steps": body.steps,
        "guidance_scale": body.cfg_scale,
        "scheduler": scheduler,
        "strength": body.denoising_strength,
        "invert_mask": bool(body.inpainting_mask_invert) and not whole,
        "whole_image": whole or not body.inpaint_full_res,
    }
    if body.mask_blur is not None:
        fields["mask_blur"] = body.mask_blur
    if body.inpaint_full_res_padding is not None:
        fields["padding"] = body.inpaint_full_res_padding
    requests = [
        InpaintRequest(**fields, seed=None if seed is None else (seed + index) % (MAX_SEED + 1))
        for index in range(body.image_count)
    ]
    return requests, warnings


# -- responses ------------------------------------------------------------------------------------


def info(results: Sequence[Result], *, size: tuple[int, int], warnings: Sequence[str] = ()) -> str:
    """A1111's `info`: a JSON string describing the run (one txt2img result, or one img2img result
    per image), with one infotext per image: the text its PNG carries."""
    first = results[0].parameters
    task = "img2img" if first.get("task") == "inpaint" else "txt2img"
    if task == "txt2img":
        seeds = [image_seed(first["seed"], index) for index in range(first["num_images"])]
        texts = [parameters_text(image_parameters(first, index)) for index in range(len(seeds))]
    else:
        seeds = [result.seed for result in results]
        texts = [parameters_text(result.parameters) for result in results]
    width, height = size
    sampler, schedule = a1111_sampler(first.get("scheduler"))
    count = len(seeds)
    described = {
        "prompt": first.get("prompt", ""),
        "all_prompts": [first.get("prompt", "")] * count,
        "negative_prompt": first.get("negative_prompt", ""),
        "all_negative_prompts": [first.get("negative_prompt", "")] * count,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * count,
        "subseed_strength": 0,
        "width": width,
        "height": height,
        "sampler_name": sampler,
        "scheduler": schedule,
        "cfg_scale": first.get("guidance_scale"),
        "steps": first.get("num_inference_steps"),
        "batch_size": count,
        "restore_faces": False,
        "sd_model_name": first.get("model"),
        "sd_model_hash": _source_hash(first["model_source"])[:10] if "model_source" in first else None,
        "denoising_strength": first.get("strength") if task == "img2img" else None,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": texts,
        "styles": [],
        "clip_skip": 1,
        "is_using_inpainting_conditioning": task == "img2img",
        "version": f"canvas-studio {core.__version__}",
        "cached": all(result.cached for result in results),
        "warnings": list(warnings),
    }
    return json.dumps(described, ensure_ascii=False)


def echoed_parameters(body: Txt2ImgBody) -> dict[str, Any]:
    """A1111 echoes the request as `parameters`; the images only when include_init_images is set."""
    echoed = body.model_dump()
    if isinstance(body, Img2ImgBody) and not body.include_init_images:
        echoed["init_images"], echoed["mask"] = None, None
    return echoed


__all__ = [
    "DEFAULT_DENOISING_STRENGTH",
    "Img2ImgBody",
    "Txt2ImgBody",
    "a1111_sampler",
    "echoed_parameters",
    "find_model",
    "generate_request",
    "info",
    "inpaint_requests",
    "model_hash",
    "sampler_list",
    "schedule_list",
    "scheduler_for",
    "sd_model_item",
]
