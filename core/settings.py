"""Operator settings: the `STUDIO_*` environment, read and checked once (pydantic-settings).

Each setting is one field below (its variable is `STUDIO_` + the field name in capitals, its bounds
and default are written here and nowhere else; the README lists them). A bad value stops start-up
with one line naming the variable: `SettingsError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from annotated_types import Ge, Gt
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
PositiveSeconds = Annotated[float, Gt(0)]


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
    max_jobs_per_session: Positive = Field(4, description="unfinished jobs per browser tab or API client")
    abandon_after_s: Positive = Field(60, description="a page's job nobody has watched for this long is cancelled")
    max_body_mb: NotNegative = Field(50, description="largest API request body")
    device: str | None = Field(None, description="cuda, mps or cpu; unset: the best available")
    queue_url: str | None = Field(
        None, description="redis://host:port/db for several machines; unset: SQLite in cache_dir"
    )
    workers: NotNegative = Field(1, description="in-process workers of the app; 0 = a pure front-end")
    lease_s: PositiveSeconds = Field(
        30.0, description="a running job whose worker stopped renewing is retried after this"
    )

    @field_validator("cache_dir", "models_file")
    @classmethod
    def _home_expanded(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser()

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
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw.strip():
                values[name] = raw.strip()
        try:
            return cls.model_validate(values)  # not cls(**values): that would read os.environ again
        except ValidationError as error:
            raise SettingsError(_one_line(error, values)) from None


def _one_line(error: ValidationError, values: Mapping[str, Any]) -> str:
    detail = error.errors()[0]
    name = str(detail["loc"][0]) if detail.get("loc") else ""
    field = Settings.model_fields.get(name)
    variable = ENV_PREFIX + name.upper()
    metadata = getattr(field, "metadata", ())
    minimum = next((item.ge for item in metadata if hasattr(item, "ge")), None)
    if field is not None and field.annotation is int:
        wanted = "a whole number" + (f" of at least {minimum}" if minimum else "")
    elif field is not None and field.annotation is float:
        wanted = "a positive number" if any(hasattr(item, "gt") for item in metadata) else "a number"
    else:
        wanted = detail.get("msg", "a valid value").lower()
    return f"{variable} must be {wanted} ({field.description if field else 'see the README'}), got {values.get(name)!r}"


__all__ = ["ENV_PREFIX", "ImageLimits", "Settings", "SettingsError"]
