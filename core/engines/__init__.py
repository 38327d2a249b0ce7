"""The engine registry: catalogue `engine` name -> how to build it, its version, and its capabilities.

One entry per engine kind, and the only place that knows kinds by name: cache keys, provenance,
page controls, API validation and the CLI's warnings all ask the entry (`spec.kind`), never
compare names. Adding an engine is one module plus one entry here.

A plain dict, as IOPaint keeps its models. Heavy imports happen inside the factories, and a
version is known without loading anything, so cache keys are cheap to compute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING, Literal

from core.errors import UnknownModelError
from core.prompts import CLIP_MAX_TOKENS

if TYPE_CHECKING:
    from core.catalogue import Availability, ModelSpec
    from core.engines.base import Engine


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
    """An engine kind: how to build one, its version, and what it can do and reads."""

    name: str
    factory: Callable[[ModelSpec], Engine]
    version: Callable[[], str]  # goes into every cache key: bump the suffix when output changes
    tasks: frozenset[str]
    # task -> request fields its output depends on, beyond the runner's (`core.requests.RUNNER_FIELDS`);
    # None: every field of the request. Keys and PNG parameters hold exactly these.
    read_fields: Mapping[str, frozenset[str]] | None
    progress: Literal["steps", "images", "once"]  # what a progress step is: a denoising step, an image, the run
    prompt_limit: int | None = None  # tokens its text encoder reads; None: no known limit
    remover_rank: int = 0  # among models that only remove: higher is the better default
    availability: Callable[[ModelSpec], Availability] | None = None  # None: weights from the Hub or a path
    source: Callable[[ModelSpec], str] | None = None  # None: where its weights come from
    runs_locally: bool = True  # False: the work (and its memory) is on someone else's machine
    working_memory: int = 0  # bytes one run needs on top of its weights (activations, decoded image)
    host_version: Callable[[], str] | None = None  # what this host changes in its pixels (goes into keys too)

    def reads(self, task: str, name: str) -> bool:
        return self.read_fields is None or name in self.read_fields.get(task, ())

    @property
    def generative(self) -> bool:
        """Reads a prompt and a seed; the others only remove, deterministically."""
        return any(self.reads(task, "seed") and self.reads(task, "prompt") for task in self.tasks)

    def reads_anywhere(self, name: str) -> bool:
        """Reads the field for some task it does (e.g. a decoder choice: only engines with a VAE)."""
        return any(self.reads(task, name) for task in self.tasks)

    @property
    def has_weights(self) -> bool:
        """Needs weights from the Hub or a folder (what `python -m core download` fetches)."""
        return self.availability is None

    def total_steps(self, steps: int, strength: float, num_images: int) -> int:
        """How many progress reports a run makes (for the bar and the ETA)."""
        if self.progress == "steps":
            return max(1, int(steps * strength))
        return num_images if self.progress == "images" else 1


# -- factories and versions (heavy imports only when called) ---------------------------------------------


def _opencv(spec: ModelSpec) -> Engine:
    from core.engines.opencv import OpenCVEngine

    return OpenCVEngine(spec)


def _diffusers(spec: ModelSpec) -> Engine:
    from core.engines.diffusion import DiffusionEngine

    return DiffusionEngine.load(spec)


def _diffusers_on_this_host() -> str:
    """OpenVINO (and its precision) for diffusers on a CPU."""
    from core import devices
    from core.engines import openvino
    from core.settings import Settings

    return openvino.version_suffix("cpu" if devices.runs_on_cpu(Settings.from_env().device) else "gpu")


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


def _built_in(spec: ModelSpec) -> Availability:
    from core.catalogue import Availability

    return Availability(True, "built in, works offline")


def _hosted_availability(spec: ModelSpec) -> Availability:
    from core.catalogue import HOSTED_HINT, Availability
    from core.secrets import hf_token

    if hf_token():
        return Availability(True, "runs on Hugging Face Inference Providers")
    return Availability(False, HOSTED_HINT)


def _hosted_source(spec: ModelSpec) -> str:
    """Where the image is made is part of its identity (never a secret)."""
    where = spec.options.get("endpoint") or spec.options.get("provider") or "auto"
    return f"hosted:{spec.hub}@{where}"


_NOTHING: Mapping[str, frozenset[str]] = {"inpaint": frozenset()}
_PROMPTS = frozenset({"prompt", "negative_prompt", "num_inference_steps", "guidance_scale"})

ENGINES: dict[str, EngineKind] = {
    "opencv": EngineKind(
        "opencv",
        _opencv,
        lambda: f"opencv-{_package_version('opencv-python-headless')}-1",
        tasks=frozenset({"inpaint"}),
        read_fields=_NOTHING,
        progress="once",
        remover_rank=1,
        availability=_built_in,
    ),
    "diffusers": EngineKind(
        "diffusers",
        _diffusers,
        lambda: f"diffusers-{_package_version('diffusers')}-torch-{_package_version('torch')}-1",
        tasks=frozenset({"txt2img", "inpaint"}),
        read_fields=None,
        progress="steps",
        prompt_limit=CLIP_MAX_TOKENS,
        host_version=_diffusers_on_this_host,
        working_memory=1024**3,  # SD-Turbo at 512 px: 5.2 GB of fp32 weights, 6.3 GB peak RSS (bench/)
    ),
    "lama": EngineKind(
        "lama",
        _lama,
        _lama_version,
        tasks=frozenset({"inpaint"}),
        read_fields=_NOTHING,
        progress="once",
        remover_rank=2,
        working_memory=512 * 1024**2,
    ),
    "hosted": EngineKind(
        "hosted",
        _hosted,
        lambda: f"hosted-huggingface_hub-{_package_version('huggingface_hub')}-1",
        tasks=frozenset({"txt2img", "inpaint"}),
        # What core/engines/hosted.py sends: inpainting sends no seed, strength or scheduler.
        read_fields={"txt2img": _PROMPTS | {"seed", "width", "height", "num_images"}, "inpaint": _PROMPTS},
        progress="images",
        availability=_hosted_availability,
        source=_hosted_source,
        runs_locally=False,
    ),
    # Segmentation (click to select), not an Engine for edits: its output is a mask.
    "sam": EngineKind(
        "sam",
        _sam,
        _sam_version,
        tasks=frozenset({"segment"}),
        read_fields={"segment": frozenset({"points", "box"})},
        progress="once",
    ),
}


def engine_kind(name: str) -> EngineKind:
    kind = ENGINES.get(name)
    if kind is None:
        raise UnknownModelError(f"the {name!r} engine is not part of this version; engines: {', '.join(ENGINES)}")
    return kind


@cache
def _version_of(engine: str) -> str:
    return ENGINES[engine].version()  # package metadata lookups cost ~1 ms: once per process


def engine_version(spec: ModelSpec) -> str:
    kind = engine_kind(spec.engine)
    return _version_of(kind.name) + (kind.host_version() if kind.host_version is not None else "")


def load_engine(spec: ModelSpec) -> Engine:
    kind = engine_kind(spec.engine)
    spec.require_available()
    return kind.factory(spec)
