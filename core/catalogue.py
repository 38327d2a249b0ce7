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
from typing import Any
from urllib.parse import urlparse

from core.engines import ENGINES, EngineKind, engine_kind
from core.errors import BadParameterError, ModelUnavailableError, UnknownModelError

BUILTIN_CATALOGUE = Path(__file__).with_name("models.toml")
TASKS = ("txt2img", "inpaint", "segment")
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


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    tasks: tuple[str, ...]
    engine: str
    hub: str | None = None
    revision: str | None = None
    file: str | None = None
    path: str | None = None
    url: str | None = None
    working_resolution: int = 512  # 0 = the engine works at the image's own size
    size_multiple: int = 8
    max_side: int = 1024
    default_steps: int = 25
    default_guidance: float = 7.5
    default_scheduler: str | None = None
    max_images: int = 4
    licence: str = ""
    memory_mb: int | None = None  # peak RAM of one run on a CPU; None: estimated from the weight files
    tiny_vae: str | None = None  # a tiny autoencoder (Hub id or local folder) for fast decode and previews
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

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

        if not self.kind.runs_locally or not devices.runs_on_cpu(os.environ.get("STUDIO_DEVICE")):
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
        on_cpu = devices.runs_on_cpu(os.environ.get("STUDIO_DEVICE"))
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
        tables = _read_models(BUILTIN_CATALOGUE)
        if extra_file is not None:
            tables.update(_read_models(extra_file))
        return cls(_spec_from_table(model_id, table) for model_id, table in tables.items())

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

        if not devices.runs_on_cpu(os.environ.get("STUDIO_DEVICE")):
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


def _read_models(path: Path) -> dict[str, dict[str, Any]]:
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
    return dict(models)


_FIELDS = {name for name in ModelSpec.__dataclass_fields__ if name != "id"}


def _spec_from_table(model_id: str, table: Mapping[str, Any]) -> ModelSpec:
    where = f"model {model_id!r}"
    if not _ID_PATTERN.match(model_id):
        raise BadParameterError(f"{where}: ids use lowercase letters, digits, '.', '_' and '-'")
    unknown = set(table) - _FIELDS
    if unknown:
        raise BadParameterError(f"{where}: unknown field(s) {sorted(unknown)}")
    values = dict(table)
    values.setdefault("name", model_id)
    values["tasks"] = tuple(values.get("tasks", ()))
    if not values["tasks"] or any(task not in TASKS for task in values["tasks"]):
        raise BadParameterError(f"{where}: tasks must be a non-empty list of {list(TASKS)}")
    if values.get("engine") not in ENGINES:
        raise BadParameterError(f"{where}: engine must be one of {list(ENGINES)}")
    unsupported = set(values["tasks"]) - ENGINES[values["engine"]].tasks
    if unsupported:
        raise BadParameterError(f"{where}: the {values['engine']} engine cannot do {sorted(unsupported)}")
    sources = [key for key in ("hub", "path", "url") if values.get(key)]
    if len(sources) > 1:
        raise BadParameterError(f"{where}: give one of hub, path or url, not {sources}")
    if values.get("hub") and not _HUB_ID_PATTERN.match(values["hub"]):
        raise BadParameterError(f"{where}: hub must look like 'owner/name'")
    values["options"] = MappingProxyType(dict(values.get("options", {})))
    try:
        return ModelSpec(id=model_id, **values)
    except TypeError as error:
        raise BadParameterError(f"{where}: {error}") from None
