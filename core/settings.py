"""Operator settings: the `STUDIO_*` environment, read and checked once (pydantic-settings).

Each setting is one field below (its variable is `STUDIO_` + the field name in capitals, its bounds
and default are written here and nowhere else; the README lists them). A bad value stops start-up
with one line naming the variable: `SettingsError`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import platformdirs
from annotated_types import Ge, Gt
from pydantic import AllowInfNan, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.devices import DEVICE_KINDS
from core.errors import StudioError

ENV_PREFIX = "STUDIO_"


class SettingsError(StudioError):
    """A `STUDIO_*` variable that cannot be used: the one line names it and says what it takes."""

    code = "misconfigured"


@dataclass(frozen=True)
class ImageLimits:
    """What an input image may be. Checked on the header, before any pixel is decoded."""

    max_pixels: int = 48_000_000  # 8000x6000; a 9500x9500 decode bomb (90 MP) is refused
    max_side: int = 8192
    min_side: int = 8
    max_aspect: float = 10.0


Positive = Annotated[int, Ge(1)]
NotNegative = Annotated[int, Ge(0)]
PositiveSeconds = Annotated[float, Gt(0), AllowInfNan(False)]
NotNegativeSeconds = Annotated[float, Ge(0), AllowInfNan(False)]
QUEUE_URL_SCHEMES = ("sqlite:///", "redis://", "rediss://", "unix://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", validate_default=True)

    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("canvas-studio")),
        description="where results (and the queue's state) are kept",
    )
    cache_max_mb: NotNegative = Field(2048, description="the result store's size bound")
    models_file: Path | None = Field(None, description="an extra catalogue TOML merged over the built-in one")
    max_resident_models: Positive = Field(1, description="models kept loaded at once")
    max_image_pixels: Positive = Field(ImageLimits.max_pixels, description="largest input image, in pixels")
    max_image_side: Positive = Field(ImageLimits.max_side, description="longest input image side, in pixels")
    max_queue: Positive = Field(32, description="unfinished jobs in the queue")
    max_jobs_per_session: Positive = Field(4, description="unfinished jobs per client address (its tabs and API calls)")
    abandon_after_s: Positive = Field(60, description="a page's job nobody has watched for this long is cancelled")
    max_body_mb: NotNegative = Field(50, description="largest API request body")
    memory_limit_mb: Positive | None = Field(
        None, description="memory models may use, in MB; unset: the cgroup limit, else the RAM available"
    )
    device: str | None = Field(None, description="the device models run on; unset: the best available")
    openvino: bool = Field(True, description="SD UNets run with OpenVINO on a CPU; false keeps them on PyTorch")
    safety_checker: bool = Field(True, description="run the safety checker of models that ship one")
    queue_url: str | None = Field(
        None, description="the job store several machines share; unset: SQLite in cache_dir"
    )
    workers: NotNegative = Field(1, description="in-process workers of the app; 0 = a pure front-end")
    lease_s: PositiveSeconds = Field(
        30.0, description="a running job whose worker stopped renewing is retried after this"
    )
    api_sync_timeout_s: PositiveSeconds = Field(
        300.0, description="longest a synchronous API call waits before answering 504; the job goes on"
    )
    api_key: SecretStr | None = Field(None, description="when set, the APIs require it (Bearer or Basic password)")
    page_password: SecretStr | None = Field(None, description="when set, the pages ask for it once per session")
    max_opencv_seconds: NotNegativeSeconds = Field(
        120.0, description="OpenCV work estimated longer than this is refused; 0 = no limit"
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_other_sources):  # noqa: ANN001
        """`from_env` alone reads the environment (blank = the default; a mapping it is given is all
        there is), so pydantic-settings' own sources are off: they would read os.environ again."""
        return (init_settings,)

    @field_validator("cache_dir", "models_file")
    @classmethod
    def _home_expanded(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser()

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str | None) -> str | None:
        if device is not None and device.lower().partition(":")[0] not in DEVICE_KINDS:
            raise ValueError(f"one of {', '.join(DEVICE_KINDS)} (cuda may name a GPU: cuda:1)")
        return device

    @field_validator("queue_url")
    @classmethod
    def _known_queue_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(QUEUE_URL_SCHEMES):
            raise ValueError("redis://host:port/db (or rediss://, unix://) or sqlite:///path")
        return url

    @property
    def cache_max_bytes(self) -> int:
        return self.cache_max_mb * 1024 * 1024

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_mb * 1024 * 1024

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_image_pixels, max_side=self.max_image_side)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from `environ` (default: the process environment); blank variables mean the default."""
        env = os.environ if environ is None else environ
        given = ((name, env.get(ENV_PREFIX + name.upper(), "").strip()) for name in cls.model_fields)
        return _validated(tuple((name, raw) for name, raw in given if raw))


@functools.lru_cache(maxsize=64)
def _validated(values: tuple[tuple[str, str], ...]) -> Settings:
    """Settings are read on every request and cache key: the same variables give the same (frozen) object."""
    try:
        return Settings(**dict(values))
    except ValidationError as error:
        raise SettingsError(_one_line(error, dict(values))) from None


def default(name: str) -> Any:
    """A setting's default, for the classes that take it as an argument (JobQueue, ModelPool) so that
    their own defaults are this one, not a copy."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


def _one_line(error: ValidationError, values: Mapping[str, Any]) -> str:
    detail = error.errors()[0]
    name = str(detail["loc"][0]) if detail.get("loc") else ""
    field = Settings.model_fields.get(name)
    if field is None:
        return f"a STUDIO_ variable is not right: {detail.get('msg', '')}"
    wanted = _wanted(field) or str(detail.get("msg", "a valid value")).removeprefix("Value error, ")
    return f"{ENV_PREFIX}{name.upper()} must be {wanted} ({field.description}), got {values.get(name)!r}"


def _wanted(field: FieldInfo) -> str | None:
    """What a field takes, in words, from its type and bounds (None: its validator says)."""
    annotation, metadata = field.annotation, list(field.metadata)
    if get_origin(annotation) in (Union, UnionType):  # X | None: unset is the default, so say what X takes
        annotation = next(arg for arg in get_args(annotation) if arg is not NoneType)
    if get_origin(annotation) is Annotated:
        annotation, *constraints = get_args(annotation)
        metadata += constraints
    at_least = next((item.ge for item in metadata if isinstance(item, Ge)), None)
    above = next((item.gt for item in metadata if isinstance(item, Gt)), None)
    if annotation is bool:
        return "true or false (1/0, yes/no, on/off)"
    if annotation is int:
        return "a whole number" + (f" of at least {at_least}" if at_least else "")
    if annotation is float:
        return "a positive number" if above == 0 else "a number, 0 or more" if at_least == 0 else "a number"
    return None


__all__ = ["ENV_PREFIX", "QUEUE_URL_SCHEMES", "ImageLimits", "Settings", "SettingsError", "default"]
