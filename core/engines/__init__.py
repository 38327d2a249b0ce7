"""The engine registry: catalogue `engine` name -> how to build it and its version.

A plain dict, as IOPaint keeps its models. Heavy imports happen inside the factories, and a
version is known without loading anything, so cache keys are cheap to compute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata

from core.catalogue import ModelSpec
from core.engines.base import Engine
from core.errors import UnknownModelError


def _package_version(package: str) -> str:
    """An installed package's version from the top of its METADATA: `metadata.version` parses the
    whole file (torch's is large), which made a cache hit in a fresh process ~40 % slower."""
    text = metadata.distribution(package).read_text("METADATA") or ""
    for line in text.splitlines():
        if line.startswith("Version:"):
            return line.partition(":")[2].strip()
        if not line:  # the end of the header
            break
    return metadata.version(package)


@dataclass(frozen=True)
class EngineKind:
    factory: Callable[[ModelSpec], Engine]
    version: Callable[[], str]  # goes into every cache key: bump the suffix when output changes


def _opencv(spec: ModelSpec) -> Engine:
    from core.engines.opencv import OpenCVEngine

    return OpenCVEngine(spec)


def _diffusers(spec: ModelSpec) -> Engine:
    from core.engines.diffusion import DiffusionEngine

    return DiffusionEngine.load(spec)


def _lama(spec: ModelSpec) -> Engine:
    from core.engines.lama import LamaEngine

    return LamaEngine.load(spec)


def _lama_version() -> str:
    from core.engines.lama import engine_version

    return engine_version()


def _sam(spec: ModelSpec):
    from core.engines.sam import SamSegmenter

    return SamSegmenter.load(spec)


def _sam_version() -> str:
    from core.engines.sam import engine_version

    return engine_version()


def _hosted(spec: ModelSpec) -> Engine:
    from core.engines.hosted import HostedEngine

    return HostedEngine(spec)


ENGINES: dict[str, EngineKind] = {
    "opencv": EngineKind(_opencv, lambda: f"opencv-{_package_version('opencv-python-headless')}-1"),
    "diffusers": EngineKind(
        _diffusers, lambda: f"diffusers-{_package_version('diffusers')}-torch-{_package_version('torch')}-1"
    ),
    "lama": EngineKind(_lama, _lama_version),
    "hosted": EngineKind(_hosted, lambda: f"hosted-huggingface_hub-{_package_version('huggingface_hub')}-1"),
    "sam": EngineKind(_sam, _sam_version),  # segmentation (click to select), not an Engine for edits
}


def _kind(spec: ModelSpec) -> EngineKind:
    kind = ENGINES.get(spec.engine)
    if kind is None:
        raise UnknownModelError(f"{spec.name} needs the {spec.engine!r} engine, which this version does not include")
    return kind


@cache
def _version_of(engine: str) -> str:
    return ENGINES[engine].version()  # package metadata lookups cost ~1 ms: once per process


def engine_version(spec: ModelSpec) -> str:
    _kind(spec)
    return _version_of(spec.engine) + _host_suffix(spec.engine)


def _host_suffix(engine: str) -> str:
    """What this host changes in an engine's pixels: OpenVINO (and its precision) for diffusers on a CPU."""
    if engine != "diffusers":
        return ""
    import os

    from core import devices
    from core.engines import openvino

    return openvino.version_suffix("cpu" if devices.runs_on_cpu(os.environ.get("STUDIO_DEVICE")) else "gpu")


def load_engine(spec: ModelSpec) -> Engine:
    kind = _kind(spec)
    spec.require_available()
    return kind.factory(spec)
