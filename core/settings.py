"""Operator settings, read once from the environment (documented in the README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class ImageLimits:
    """What an input image may be. Checked on the header, before any pixel is decoded."""

    max_pixels: int = 48_000_000  # 8000x6000; a 9500x9500 decode bomb (90 MP) is refused
    max_side: int = 8192
    min_side: int = 8
    max_aspect: float = 10.0


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    cache_max_bytes: int
    models_file: Path | None
    max_resident_models: int
    image_limits: ImageLimits
    max_queue: int
    max_jobs_per_session: int
    abandon_after_s: float  # a page's job nobody has watched for this long is cancelled (closed tab)
    max_body_bytes: int
    device: str | None  # None = auto (cuda > mps > cpu)
    queue_url: str | None = None  # None = the SQLite job store in cache_dir; redis://host:port/db for several machines
    workers: int = 1  # in-process workers of the app; 0 = a pure front-end
    lease_s: float = 30.0  # a running job whose worker stopped renewing for this long is retried elsewhere

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        cache_dir = env.get("STUDIO_CACHE_DIR") or platformdirs.user_cache_dir("canvas-studio")
        models_file = env.get("STUDIO_MODELS_FILE") or None
        return cls(
            cache_dir=Path(cache_dir).expanduser(),
            cache_max_bytes=_int(env, "STUDIO_CACHE_MAX_MB", 2048) * 1024 * 1024,
            models_file=Path(models_file).expanduser() if models_file else None,
            max_resident_models=max(1, _int(env, "STUDIO_MAX_RESIDENT_MODELS", 1)),
            image_limits=ImageLimits(
                max_pixels=_int(env, "STUDIO_MAX_IMAGE_PIXELS", ImageLimits.max_pixels),
                max_side=_int(env, "STUDIO_MAX_IMAGE_SIDE", ImageLimits.max_side),
            ),
            max_queue=max(1, _int(env, "STUDIO_MAX_QUEUE", 32)),
            max_jobs_per_session=max(1, _int(env, "STUDIO_MAX_JOBS_PER_SESSION", 4)),
            abandon_after_s=float(max(1, _int(env, "STUDIO_ABANDON_AFTER_S", 60))),
            max_body_bytes=_int(env, "STUDIO_MAX_BODY_MB", 50) * 1024 * 1024,
            device=env.get("STUDIO_DEVICE") or None,
            queue_url=env.get("STUDIO_QUEUE_URL") or None,
            workers=max(0, _int(env, "STUDIO_WORKERS", 1)),
            lease_s=_float(env, "STUDIO_LEASE_S", 30.0),
        )
