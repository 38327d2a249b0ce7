"""The model catalogue: which models exist, where their weights come from, whether they can run now.

The built-in list is `core/models.toml`; `STUDIO_MODELS_FILE` names an extra TOML file of the
same format whose entries are merged over it (a table with an existing id replaces that model).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlparse

from annotated_types import Ge
from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo

from core.engines import ENGINES, EngineKind, engine_kind
from core.errors import BadParameterError, ModelUnavailableError, UnknownModelError
from core.requests import DEFAULT_SIDE, MIN_SIDE, Guidance, Scheduler, Steps, describe
from core.settings import Settings

BUILTIN_CATALOGUE = Path(__file__).with_name("models.toml")
Task = Literal["txt2img", "inpaint", "segment"]
TASKS = get_args(Task)
EngineName = Literal[tuple(ENGINES)]  # the registry's kinds (core/engines/__init__.py)
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HOSTED_HINT = (
    'needs a Hugging Face token: set HF_TOKEN in the environment, or HF_TOKEN = "hf_..." in '
    ".streamlit/secrets.toml (Community Cloud: app settings > Secrets); create a fine-grained token "
    'allowed to "Make calls to Inference Providers" at huggingface.co/settings/tokens'
)
_HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Availability:
    ready: bool  # can run right now on this machine, with no download
    detail: str  # one line for people: why not, and how to get it


# What a catalogue entry may be: checked when it is built, like a request (strict: "25" is not a number).
_ENTRY_CONFIG = ConfigDict(strict=True, extra="forbid")


@pydantic_dataclass(frozen=True, kw_only=True, config=_ENTRY_CONFIG)
class ModelSpec:
    """One catalogue entry: a `[models.ID]` table of `core/models.toml` or of `STUDIO_MODELS_FILE`.

    Every field's type, default and meaning is written here once; the request schema's bounds
    (`core.requests.Steps`, `Guidance`, `Scheduler`) apply to the defaults it gives requests.
    """

    id: Annotated[str, Field(description="The table's name: lowercase letters, digits, '.', '_', '-'.")]
    name: Annotated[str, Field(validate_default=True, description="Display name; unset: the id.")] = ""
    tasks: Annotated[
        tuple[Task, ...], Field(description="What it does: txt2img, inpaint and/or segment.")
    ]
    engine: Annotated[EngineName, Field(description="Which engine runs it (core/engines/__init__.py).")]
    hub: Annotated[str | None, Field(description="A Hugging Face Hub repo id, 'owner/name'.")] = None
    revision: Annotated[str | None, Field(description="Branch, tag or commit of the hub repo.")] = None
    file: Annotated[str | None, Field(description="A file inside the hub repo (single-file checkpoint, ONNX).")] = None
    path: Annotated[str | None, Field(description="A local diffusers folder, .safetensors or .onnx file.")] = None
    url: Annotated[str | None, Field(description="A huggingface.co file URL of a single-file checkpoint.")] = None
    working_resolution: Annotated[
        Annotated[int, Ge(0)], Field(description="Side of the square whose area it works at; 0: the image's own size.")
    ] = DEFAULT_SIDE
    size_multiple: Annotated[Annotated[int, Ge(1)], Field(description="Width and height are multiples of this.")] = 8
    max_side: Annotated[Annotated[int, Ge(MIN_SIDE)], Field(description="Largest width or height it generates.")] = 1024
    default_steps: Annotated[Steps, Field(description="Steps of a request that gives none.")] = 25
    default_guidance: Annotated[Guidance, Field(description="Guidance of a request that gives none.")] = 7.5
    default_scheduler: Annotated[Scheduler | None, Field(description="Sampler; unset: the pipeline's own.")] = None
    max_images: Annotated[Annotated[int, Ge(1)], Field(description="Most images one request may ask for.")] = 4
    licence: Annotated[str, Field(description="The weights' licence, shown to people.")] = ""
    memory_mb: Annotated[
        Annotated[int, Ge(1)] | None,
        Field(description="Peak RAM of one run on a CPU, MB; unset: estimated from the weight files."),
    ] = None
    tiny_vae: Annotated[
        str | None, Field(description="A tiny autoencoder (Hub id or local folder) for fast decode and previews.")
    ] = None
    options: Annotated[
        Mapping[str, Any], Field(strict=False, description="Engine-specific settings (variant, config, method...).")
    ] = field(default_factory=lambda: MappingProxyType({}))

    @field_validator("id")
    @classmethod
    def _plain_id(cls, model_id: str) -> str:
        if not _ID_PATTERN.match(model_id):
            raise ValueError("uses lowercase letters, digits, '.', '_' and '-' (at most 64)")
        return model_id

    @field_validator("name")
    @classmethod
    def _named(cls, name: str, info: ValidationInfo) -> str:
        return name or info.data.get("id", "")

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_list(cls, tasks: Any) -> Any:
        if not isinstance(tasks, list | tuple) or not tasks or not set(tasks) <= set(TASKS):
            raise ValueError(f"must be a non-empty list of {', '.join(TASKS)}, got {tasks!r}")
        return tuple(tasks)

    @field_validator("options", mode="before")
    @classmethod
    def _a_table(cls, options: Any) -> Any:
        if not isinstance(options, Mapping):
            raise ValueError(f'must be a table, e.g. {{ variant = "fp16" }}, got {options!r}')
        return options

    @field_validator("hub")
    @classmethod
    def _hub_id(cls, hub: str | None) -> str | None:
        if hub is not None and not _HUB_ID_PATTERN.match(hub):
            raise ValueError(f"must look like 'owner/name', got {hub!r}")
        return hub

    @field_validator("options")
    @classmethod
    def _read_only(cls, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return MappingProxyType(dict(options))

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        unsupported = sorted(set(self.tasks) - engine_kind(self.engine).tasks)
        if unsupported:
            raise ValueError(f"tasks: the {self.engine} engine cannot do {unsupported}")
        sources = [key for key in ("hub", "path", "url") if getattr(self, key)]
        if len(sources) > 1:
            raise ValueError(f"give one of hub, path or url, not {sources}")
        return self

    @property
    def kind(self) -> EngineKind:
        """The engine kind's registry entry: what it can do and which request fields it reads."""
        return engine_kind(self.engine)

    @property
    def source(self) -> str:
        """Where the weights come from, for people and for cache keys (never a secret)."""
        if self.kind.source is not None:
            return self.kind.source(self)
        if self.hub:
            return f"{self.hub}@{self.revision or 'main'}" + (f"/{self.file}" if self.file else "")
        if self.path:  # identifies the folder without showing the server's directory layout
            from core.keys import digest_bytes

            resolved = str(Path(self.path).expanduser().resolve())
            return f"local:{Path(resolved).name}#{digest_bytes(resolved.encode())[:12]}"
        return self.url or self.engine

    @property
    def hub_location(self) -> tuple[str, str | None, str | None] | None:
        """(repo, revision, file or None) for weights on the Hub, given as `hub` or as a Hub file URL."""
        if self.hub:
            return self.hub, self.revision, self.file
        if self.url:
            return hub_file_from_url(self.url)
        return None

    @property
    def generative(self) -> bool:
        """Reads a prompt and a seed. The others (OpenCV, LaMa) only remove, deterministically."""
        return self.kind.generative

    def supports(self, task: str) -> bool:
        return task in self.tasks

    def memory_need(self) -> int:
        """Bytes of RAM one run takes on this host: 0 for models that run elsewhere (hosted, or
        on a GPU, whose memory is not counted here) or need little (OpenCV)."""
        from core import devices, memory

        if not self.kind.runs_locally or not devices.runs_on_cpu(Settings.from_env().device):
            return 0
        if self.memory_mb is not None:
            need = int(self.memory_mb) * memory.MIB
        else:
            need = memory.estimated_need(self.kind.working_memory, self._local_weight_files())
        from core.engines import openvino

        if self.kind.host_version is not None and "-openvino-" in self.kind.host_version():
            need = int(need * openvino.PEAK_MEMORY_FACTOR)  # OpenVINO's compiled copy while it loads
        return need

    def tiny_vae_folder(self) -> Path | None:
        """The tiny autoencoder's local folder (a folder of its own, or the Hub cache), or None."""
        if not self.tiny_vae:
            return None
        folder = Path(self.tiny_vae).expanduser()
        if (folder / "config.json").is_file():
            return folder
        if not _HUB_ID_PATTERN.match(self.tiny_vae):
            return None
        config = _hub_cache_path(self.tiny_vae, "config.json", None)
        return None if config is None else config.parent

    def default_decoder(self) -> str | None:
        """"fast" (the tiny autoencoder) on a CPU when it is on disk, else "full" (the model's own
        VAE); None for engines that have no decoder to choose."""
        from core import devices

        if not self.kind.reads_anywhere("decoder"):
            return None
        on_cpu = devices.runs_on_cpu(Settings.from_env().device)
        return "fast" if on_cpu and self.tiny_vae_folder() is not None else "full"

    def _local_weight_files(self) -> list[Path]:
        from core import memory

        if self.path:
            path = Path(self.path).expanduser()
            return memory.weight_files(path) if path.is_dir() else [path]
        location = self.hub_location
        if location is None:
            return []
        repo, revision, filename = location
        found = _hub_cache_path(repo, filename or "model_index.json", revision)
        if found is None:
            return []
        return [found] if filename else memory.weight_files(found.parent)

    def availability(self) -> Availability:
        if self.kind.availability is not None:  # built in, or runs elsewhere
            return self.kind.availability(self)
        from core import memory

        too_big = memory.budget().refusal(self.memory_need())  # before "download it": that would not help
        if too_big is not None:
            return Availability(False, too_big)
        if self.path:
            if Path(self.path).expanduser().exists():
                return Availability(True, "local files")
            return Availability(False, f"local files for {self.id} are missing; fix 'path' in the catalogue")
        location = self.hub_location
        if location:
            repo, revision, filename = location
            extra = self.options.get("decoder")  # a second file (SAM's decoder beside its encoder)
            if _in_hub_cache(repo, filename or "model_index.json", revision) and (
                not extra or _in_hub_cache(repo, extra, revision)
            ):
                return Availability(True, "downloaded")
            return Availability(False, self.download_hint())
        if self.url:
            return Availability(False, "only huggingface.co file URLs are supported; download the file and set 'path'")
        return Availability(False, f"{self.id} has no source in the catalogue")

    def download_hint(self) -> str:
        if hub_offline():
            return f"not downloaded and HF_HUB_OFFLINE is set; on a connected machine run: python -m core download {self.id}"
        return f"not downloaded yet; run: python -m core download {self.id}"

    def require_available(self) -> None:
        availability = self.availability()
        if not availability.ready:
            raise ModelUnavailableError(f"{self.name} is not available: {availability.detail}")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_file_from_url(url: str) -> tuple[str, str, str] | None:
    """(repo, revision, file) for https://huggingface.co/OWNER/REPO/(blob|resolve)/REV/FILE, else None."""
    parsed = urlparse(url)
    if parsed.scheme != "https" or parsed.netloc not in ("huggingface.co", "hf.co"):
        return None
    parts = [part for part in parsed.path.split("/") if part]
    if len(parts) < 5 or parts[2] not in ("blob", "resolve"):
        return None
    return f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])


def _in_hub_cache(repo_id: str, filename: str, revision: str | None) -> bool:
    return _hub_cache_path(repo_id, filename, revision) is not None


def _hub_cache_path(repo_id: str, filename: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


class Catalogue:
    def __init__(self, specs: Iterable[ModelSpec]):
        self._specs = {spec.id: spec for spec in specs}

    @classmethod
    def load(cls, extra_file: Path | None = None) -> Catalogue:
        specs = _read_models(BUILTIN_CATALOGUE)
        if extra_file is not None:
            specs.update(_read_models(extra_file))  # an entry with an existing id replaces that model
        return cls(specs.values())

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def for_task(self, task: str) -> list[ModelSpec]:
        return [spec for spec in self._specs.values() if spec.supports(task)]

    def default_remove_model(self) -> str:
        """The best remover that can run now (LaMa), OpenCV Telea otherwise (what the leading tools default to)."""
        fallback = "opencv-telea"
        removers = [spec for spec in self.for_task("inpaint") if not spec.generative]
        removers.sort(key=lambda spec: (spec.kind.remover_rank, spec.id == fallback), reverse=True)
        return next((spec.id for spec in removers if spec.availability().ready), fallback)

    def default_segment_model(self) -> str:
        """The first segmentation model that can run now, else the first one (its error says how to get it)."""
        specs = self.for_task("segment")
        if not specs:
            raise UnknownModelError("the catalogue has no segmentation model")
        return next((spec.id for spec in specs if spec.availability().ready), specs[0].id)

    def default_generative_model(self, task: str) -> str | None:
        """For Generate and Replace: on a host with no GPU, the first hosted model that can run
        (a token is set), since a local diffusion model is slow on a CPU or does not fit; else
        None (the first model that can run)."""
        from core import devices

        if not devices.runs_on_cpu(Settings.from_env().device):
            return None
        for spec in self.for_task(task):
            if not spec.kind.runs_locally and spec.availability().ready:
                return spec.id
        return None

    def get(self, model_id: str) -> ModelSpec:
        spec = self._specs.get(model_id) if isinstance(model_id, str) else None
        if spec is None:
            shown = model_id if isinstance(model_id, str) and _ID_PATTERN.match(model_id) else "that id"
            raise UnknownModelError(f"unknown model {shown!r}; see the list of models (python -m core models)")
        return spec

    def resolve(self, model: str, *, allow_local_path: bool = False) -> ModelSpec:
        """A catalogue id, or (CLI only) a local diffusers pipeline folder."""
        if model in self._specs:
            return self._specs[model]
        if allow_local_path and Path(model).expanduser().is_dir():
            return local_pipeline_spec(Path(model).expanduser())
        return self.get(model)


def local_pipeline_spec(folder: Path) -> ModelSpec:
    """A spec for a diffusers folder given on the command line; tasks come from its UNet."""
    import json

    if not (folder / "model_index.json").is_file():
        raise UnknownModelError("that folder is not a diffusers pipeline (no model_index.json)")
    tasks: tuple[str, ...] = ("txt2img", "inpaint")
    unet_config = folder / "unet" / "config.json"
    if unet_config.is_file():
        in_channels = json.loads(unet_config.read_text()).get("in_channels", 4)
        if in_channels == 9:
            tasks = ("inpaint",)
    return ModelSpec(
        id=f"local-{folder.name.lower()}"[:64],
        name=f"Local pipeline {folder.name}",
        tasks=tasks,
        engine="diffusers",
        path=str(folder.resolve()),
    )


def _read_models(path: Path) -> dict[str, ModelSpec]:
    """The entries of one catalogue file; a bad one is one line naming the file, the entry and the field."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise BadParameterError(f"model catalogue file {Path(path).name!r} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise BadParameterError(f"model catalogue file {Path(path).name!r} is not valid TOML: {error}") from None
    models = document.get("models", {})
    if not isinstance(models, dict):
        raise BadParameterError(f"{Path(path).name}: [models] must be a table of models")
    return {model_id: _entry(Path(path).name, model_id, table) for model_id, table in models.items()}


def _entry(file_name: str, model_id: str, table: Any) -> ModelSpec:
    where = f"{file_name}: model {model_id!r}"
    if not isinstance(table, dict):
        raise BadParameterError(f"{where}: must be a table of fields ([models.{model_id}])")
    if "id" in table:
        raise BadParameterError(f"{where}: id: unknown field (the id is the table's name)")
    try:
        return ModelSpec(**table, id=model_id)
    except ValidationError as error:
        raise BadParameterError(f"{where}: {describe(error.errors(), ENTRY_FIELDS)}") from None


ENTRY_FIELDS: Mapping[str, FieldInfo] = MappingProxyType(dict(ModelSpec.__pydantic_fields__))
