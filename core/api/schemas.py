"""The API's request and response bodies: field names are the core requests' names."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from core import images, masks, services
from core.errors import BadImageError, BadMaskError, StudioError
from core.jobs import JobState
from core.requests import GenerateRequest, InpaintRequest, OutpaintRequest, SegmentRequest, fields

# -- request bodies: derived from the core requests (`core.requests`), field for field -------------


class _Body(BaseModel):
    # strict: "5" is not a number and 2.5 is not a step count; unknown fields are typos, refused
    model_config = ConfigDict(extra="forbid", strict=True)


def request_fields(
    request_type: type, *, without: tuple[str, ...] = (), only: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The request's fields as pydantic `create_model` wants them: the same types, bounds, defaults, docs."""
    return {
        name: (info.annotation, info)
        for name, info in fields(request_type).items()
        if name not in without and (only is None or name in only)
    }


_IMAGE = (str, Field(description="The image, base64 PNG/JPEG/WebP (a data: URL prefix is accepted)."))
_MASK = (
    str,
    Field(
        description="The mask, base64 PNG/WebP, the image's size or aspect: white (or opaque) = repaint, black = keep."
    ),
)


class _GenerateBase(_Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "sd-turbo", "prompt": "a red fox in the snow", "seed": 42}]}
    )

    def to_request(self) -> GenerateRequest:
        return GenerateRequest(**self.model_dump(exclude={"task"}))


class _InpaintBase(_Body):
    def to_request(self) -> InpaintRequest:
        """Decodes the pixels: call it in a worker thread."""
        limits = services.studio().image_limits
        image = images.load_image(base64_bytes(self.image, "image", BadImageError), limits)
        mask = masks.mask_from_image(base64_bytes(self.mask, "mask", BadMaskError), image.size, limits)
        return InpaintRequest(**self.model_dump(exclude={"task", "image", "mask"}), image=image, mask=mask)


class _OutpaintBase(_Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "opencv-telea", "image": "<base64>", "aspect": "16:9"}]}
    )

    def to_request(self) -> OutpaintRequest:
        """Decodes the pixels: call it in a worker thread."""
        limits = services.studio().image_limits
        image = images.load_image(base64_bytes(self.image, "image", BadImageError), limits)
        return OutpaintRequest(**self.model_dump(exclude={"task", "image"}), image=image)


GenerateBody = create_model("GenerateBody", __base__=_GenerateBase, **request_fields(GenerateRequest))
InpaintBody = create_model(
    "InpaintBody",
    __base__=_InpaintBase,
    image=_IMAGE,
    mask=_MASK,
    **request_fields(InpaintRequest, without=("image", "mask")),
)
OutpaintBody = create_model(
    "OutpaintBody", __base__=_OutpaintBase, image=_IMAGE, **request_fields(OutpaintRequest, without=("image",))
)


class SegmentPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    x: float = Field(description="photo pixels from the left")
    y: float = Field(description="photo pixels from the top")
    include: bool = Field(True, description="true: part of the object; false: not part of it")


class SegmentBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"image": "<base64>", "points": [{"x": 320, "y": 240}]}]},
    )

    model: str | None = Field(None, description="A segmentation model id; null: the first one that can run.")
    image: str = Field(description="The image, base64 PNG/JPEG/WebP (a data: URL prefix is accepted).")
    points: list[SegmentPoint] = Field([], description="clicks, in photo pixels")
    box: list[float] | None = Field(None, description="[left, top, right, bottom] around the object, photo pixels")

    def to_request(self) -> SegmentRequest:
        """Decodes the pixels: call it in a worker thread."""
        studio = services.studio()
        image = images.load_image(base64_bytes(self.image, "image", BadImageError), studio.image_limits)
        return SegmentRequest(
            model=self.model or studio.catalogue.default_segment_model(),
            image=image,
            points=tuple((point.x, point.y, point.include) for point in self.points),
            box=None if self.box is None else tuple(self.box),
        )


class SegmentResult(BaseModel):
    mask: str = Field(description="base64 PNG, greyscale, the photo's size: white = selected")
    width: int
    height: int
    model: str


class GenerateJobBody(GenerateBody):
    task: Literal["generate"]


class InpaintJobBody(InpaintBody):
    task: Literal["inpaint"]


class OutpaintJobBody(OutpaintBody):
    task: Literal["outpaint"]


JobBody = Annotated[GenerateJobBody | InpaintJobBody | OutpaintJobBody, Field(discriminator="task")]

_BASE64_SPACE = re.compile(rb"\s+")
_DATA_URL = re.compile(rb"^data:[\w.+/-]*(;[\w=.-]+)*;base64,")


def base64_bytes(text: str, name: str, error: type[StudioError]) -> bytes:
    raw = _DATA_URL.sub(b"", _BASE64_SPACE.sub(b"", text.encode("utf-8", "replace")), count=1)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{name} is not valid base64; send the file's bytes base64-encoded") from None
    if not data:
        raise error(f"{name} is empty; send a PNG, JPEG or WebP file base64-encoded")
    return data


# -- response bodies (for the schema; handlers return plain dicts) ---------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str
    job_id: str | None = Field(None, description="With 504: the job goes on; poll GET /jobs/{job_id}.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    device: str
    queue_length: int = Field(description="jobs waiting to start, on every front-end of this job store")
    queue_backend: Literal["sqlite", "redis"] = Field(description="the job store (STUDIO_QUEUE_URL)")
    workers_alive: int = Field(description="workers taking jobs from this job store, in any process")
    pid: int
    store: str = Field(description='"ok", or why results are not being kept (jobs still run and answer)')
    jobs: str = Field(description='"ok", or why jobs do not survive a restart (they still run and answer)')


class ModelInfo(BaseModel):
    id: str
    name: str
    tasks: list[str]
    engine: str
    available: bool
    detail: str = Field(description="Why it cannot run now and how to get it, or where it runs from.")


class _ResultBody(BaseModel):
    seed: int
    cached: bool
    parameters: dict[str, Any] = Field(description="Every parameter, as stored in the PNGs.")
    app_version: str
    warnings: list[str] = Field(default=[], description="For people, e.g. a prompt the text encoder cuts short.")


class GenerateResult(_ResultBody):
    images: list[str] = Field(description="base64 PNGs carrying their parameters")


class InpaintResult(_ResultBody):
    image: str = Field(description="base64 PNG carrying its parameters")


class JobCreated(BaseModel):
    id: str
    status: JobState
    position: int
    eta_s: float | None


class JobInfo(BaseModel):
    id: str
    status: JobState
    position: int = Field(description="1 = next to run; 0 when running or finished")
    step: int
    total: int
    eta_s: float | None = Field(description="seconds until done, the wait included; null: no estimate yet")
    elapsed_s: float
    error: str | None
    error_code: str | None
    cached: bool
    cancel_requested: bool
    worker: str | None = Field(description="host:pid of the worker that ran (or runs) it")
    attempts: int = Field(description="runs started: 2 when its first worker was lost")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses."""
    return {status: {"model": ErrorBody} for status in statuses}
