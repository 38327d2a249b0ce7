"""Stable Diffusion family models through diffusers: text-to-image and inpainting.

Loading is strict, because a model folder is code as much as data:
- weights only from safetensors files (pickled .bin/.ckpt files can run code when loaded);
- only pipeline and component classes that ship with diffusers or transformers (never
  `trust_remote_code` or `custom_pipeline`);
- Hub models only from the local Hugging Face cache: `python -m core download ID` fetches them,
  so a run never starts a multi-gigabyte download.

The text-to-image and inpainting pipelines of one model share their components (`from_pipe`), so
the weights are in memory once.

Decoders: a model with `tiny_vae` in the catalogue also loads that tiny autoencoder (diffusers
`AutoencoderTiny`, TAESD: ~2.4 M parameters against the SD VAE's 84 M). Each run uses the one its
request names ("fast": the tiny one, for encoding the image to edit and decoding the result;
"full": the model's own VAE), and previews always come from the tiny one when it is there. On this
2-core CPU, at 512 px, the full VAE decode costs 15.6 s and the tiny one 1.1 s.

Threads: one engine instance must be used by one thread at a time — the job queue runs one worker
per device. A lock serialises calls anyway, because a pipeline and its scheduler keep per-run
state. Each call builds a fresh scheduler for that reason too.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch
from PIL import Image

from core import devices, preview
from core.catalogue import ModelSpec, hub_file_from_url, hub_offline
from core.engines.base import Generated, Reporter
from core.errors import (
    BadParameterError,
    EngineError,
    ModelUnavailableError,
    OutOfMemoryError,
    StudioError,
)
from core.requests import SCHEDULERS, GenerateRequest, InpaintRequest, image_seed
from core.settings import Settings

logger = logging.getLogger(__name__)

# Scheduler name (core.requests.SCHEDULERS) -> diffusers class and the settings that make it that sampler.
SCHEDULER_CLASSES: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
}
assert set(SCHEDULER_CLASSES) == set(SCHEDULERS), "every scheduler a request may name needs a class"

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
_OUT_OF_MEMORY = "ran out of memory: lower the size, steps or number of images"


def out_of_memory_error(error: BaseException) -> OutOfMemoryError | None:
    """The user-facing error for an exception that means memory ran out (GPU or CPU), else None."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return OutOfMemoryError(_OUT_OF_MEMORY)
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        # CUDA/MPS say "out of memory"; torch's CPU allocator "can't allocate memory".
        if any(sign in text for sign in ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")):
            return OutOfMemoryError(_OUT_OF_MEMORY)
    return None


# ---------------------------------------------------------------------------------------------
# Where the weights are


@dataclass(frozen=True)
class _Source:
    folder: Path  # a diffusers pipeline folder; for a single file, the folder giving its configuration
    checkpoint: Path | None = None  # a single-file .safetensors checkpoint
    from_hub: bool = False


def _unavailable(spec: ModelSpec, detail: str) -> ModelUnavailableError:
    return ModelUnavailableError(f"{spec.name} is not available: {detail}")


def _from_hub_cache(repo: str, filename: str, revision: str | None) -> Path | None:
    """A file of a Hub repo in the local cache, or None. Looked up in the cache itself (as the
    catalogue's availability check does) rather than with `snapshot_download`, which refuses a
    snapshot downloaded with file patterns (weights in one format only) as incomplete."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _download_again(spec: ModelSpec) -> str:
    where = "on a connected machine run" if hub_offline() else "run"
    return f"{where}: python -m core download {spec.id}"


def _cached_snapshot(spec: ModelSpec, repo: str, revision: str | None) -> Path:
    index = _from_hub_cache(repo, "model_index.json", revision)
    if index is None:
        raise _unavailable(spec, spec.download_hint())
    return index.parent


def _cached_file(spec: ModelSpec, repo: str, filename: str, revision: str | None) -> Path:
    found = _from_hub_cache(repo, filename, revision)
    if found is None:
        raise _unavailable(spec, spec.download_hint())
    return found


def _require_safetensors_file(spec: ModelSpec, checkpoint: Path) -> None:
    if checkpoint.suffix.lower() != ".safetensors":
        raise _unavailable(spec, "it ships no safetensors weights; only safetensors are loaded")


def _resolve_source(spec: ModelSpec) -> _Source:
    if spec.hub and spec.file:
        checkpoint = Path(spec.file)
        _require_safetensors_file(spec, checkpoint)
        checkpoint = _cached_file(spec, spec.hub, spec.file, spec.revision)
        return _Source(_checkpoint_config(spec, checkpoint), checkpoint, from_hub=True)
    if spec.hub:
        return _Source(_cached_snapshot(spec, spec.hub, spec.revision), from_hub=True)
    if spec.path:
        path = Path(spec.path).expanduser()
        if path.is_dir():
            return _Source(path)
        if path.is_file():
            _require_safetensors_file(spec, path)
            return _Source(_checkpoint_config(spec, path), path)
        raise _unavailable(spec, f"local files for {spec.id} are missing; fix 'path' in the catalogue")
    if spec.url:
        location = hub_file_from_url(spec.url)
        if location is None:
            raise _unavailable(spec, "only huggingface.co file URLs are supported; download the file and set 'path'")
        repo, revision, filename = location
        _require_safetensors_file(spec, Path(filename))
        checkpoint = _cached_file(spec, repo, filename, revision)
        return _Source(_checkpoint_config(spec, checkpoint), checkpoint, from_hub=True)
    raise _unavailable(spec, f"{spec.id} has no source in the catalogue (hub, path or url)")


class _LazyCheckpoint(Mapping):
    """A safetensors file as a mapping that reads a tensor only when asked for it, so a
    checkpoint's architecture can be recognised from a few keys without loading gigabytes."""

    def __init__(self, handle):
        self._handle = handle
        self._keys = frozenset(handle.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._handle.get_tensor(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _recognised_config_repo(checkpoint: Path) -> str | None:
    """The Hub pipeline whose configuration diffusers uses for this kind of checkpoint."""
    from diffusers.loaders.single_file_utils import fetch_diffusers_config
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), framework="pt") as handle:
            return fetch_diffusers_config(_LazyCheckpoint(handle))["pretrained_model_name_or_path"]
    except Exception as error:  # unreadable file or an architecture diffusers does not know
        logger.info("could not recognise the architecture of a checkpoint: %s", error)
        return None


def _checkpoint_config(spec: ModelSpec, checkpoint: Path) -> Path:
    """The pipeline folder configuring a single-file checkpoint: `options.config` (a Hub id in
    the cache or a local folder), else the configuration diffusers pairs with its architecture.
    Resolved here from local files, because diffusers itself would go online to fetch it."""
    config = spec.options.get("config")
    if config is None:
        config = _recognised_config_repo(checkpoint)
        if config is None:
            raise _unavailable(spec, "its architecture was not recognised; set options.config to its pipeline's Hub id")
    if not isinstance(config, str) or not config.strip():
        raise BadParameterError(f"{spec.id}: options.config must be a Hub id or a local folder")
    folder = Path(config).expanduser()
    if folder.is_dir():
        return folder
    if config.count("/") != 1:
        raise _unavailable(spec, "its options.config is neither a local folder nor a Hub id")
    index = _from_hub_cache(config, "model_index.json", None)
    if index is None:
        raise _unavailable(
            spec, f"its pipeline configuration ({config}) is not downloaded; on a connected machine run: hf download {config} --include \"*.json\" \"*.txt\""
        )
    return index.parent


# ---------------------------------------------------------------------------------------------
# What a pipeline folder holds


def _read_index(spec: ModelSpec, source: _Source) -> dict[str, Any]:
    try:
        index = json.loads((source.folder / "model_index.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        if source.from_hub:
            raise _unavailable(spec, f"its download is incomplete; {_download_again(spec)}") from None
        raise _unavailable(spec, "its folder is not a diffusers pipeline (no model_index.json)") from None
    except (OSError, ValueError):
        raise _unavailable(spec, "its model_index.json is unreadable") from None
    if not isinstance(index, dict):
        raise _unavailable(spec, "its model_index.json is not a diffusers pipeline description")
    return index


def _components(index: Mapping[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """name -> (library, class) for every component entry of a model_index.json."""
    return {
        name: (value[0], value[1])
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and len(value) == 2
    }


def _known_class(library: str, class_name: str) -> type | None:
    """A class from diffusers, a diffusers pipeline module or transformers; None for anything else."""
    if library == "diffusers":
        module: Any = diffusers
    elif library == "transformers":
        import transformers

        module = transformers
    elif isinstance(library, str) and library.isidentifier() and hasattr(diffusers.pipelines, library):
        module = getattr(diffusers.pipelines, library)
    else:
        return None
    try:
        found = getattr(module, class_name)
    except (AttributeError, ImportError, RuntimeError):
        return None
    return found if isinstance(found, type) else None


def _refuse_remote_code(spec: ModelSpec, index: Mapping[str, Any]) -> type:
    """The pipeline class, after checking that every class the folder names ships with
    diffusers/transformers; a folder asking for its own code is refused, never run."""
    refusal = _unavailable(spec, "it needs code that is not part of diffusers or transformers, and remote code is never run")
    pipeline_name = index.get("_class_name")
    pipeline_class = getattr(diffusers, pipeline_name, None) if isinstance(pipeline_name, str) else None
    if not (isinstance(pipeline_class, type) and issubclass(pipeline_class, diffusers.DiffusionPipeline)):
        raise refusal
    for library, class_name in _components(index).values():
        if library is None and class_name is None:
            continue  # an optional component left out
        if not isinstance(library, str) or not isinstance(class_name, str) or _known_class(library, class_name) is None:
            raise refusal
    return pipeline_class


def _is_model(library: str | None, class_name: str | None) -> bool:
    found = _known_class(library, class_name) if library and class_name else None
    return found is not None and issubclass(found, torch.nn.Module)


def _require_safetensors(spec: ModelSpec, folder: Path, index: Mapping[str, Any]) -> None:
    """Refuse a pipeline whose weights exist only in pickle-based formats."""
    for name, (library, class_name) in _components(index).items():
        if not _is_model(library, class_name) or not (folder / name).is_dir():
            continue
        files = [path.name.lower() for path in (folder / name).iterdir()]
        has_weights = any(file.endswith(_WEIGHT_SUFFIXES) for file in files)
        if has_weights and not any(file.endswith(".safetensors") for file in files):
            raise _unavailable(spec, "it ships no safetensors weights; only safetensors are loaded")


def _unet_in_channels(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))["in_channels"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _has_variant(folder: Path, variant: str) -> bool:
    return any(folder.glob(f"*/*.{variant}.safetensors")) or any(folder.glob(f"*/*.{variant}-*.safetensors"))


# ---------------------------------------------------------------------------------------------
# Loading


def _load_pipelines(spec: ModelSpec, source: _Source, index: Mapping[str, Any], pipeline_class: type, dtype: torch.dtype):
    """(text-to-image pipeline or None, inpainting pipeline or None), sharing their components."""
    from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image

    # An inpainting UNet (9 input channels) cannot generate from text, whatever the catalogue says.
    wants_txt2img = "txt2img" in spec.tasks and _unet_in_channels(source.folder) != 9
    wants_inpaint = "inpaint" in spec.tasks
    if source.checkpoint is not None:
        # Safety checkers are not part of single-file checkpoints; diffusers loads none.
        base = pipeline_class.from_single_file(
            str(source.checkpoint), config=str(source.folder), dtype=dtype, local_files_only=True
        )
        txt2img = AutoPipelineForText2Image.from_pipe(base) if wants_txt2img else None
        inpaint = AutoPipelineForInpainting.from_pipe(txt2img or base) if wants_inpaint else None
        return txt2img, inpaint
    options: dict[str, Any] = {
        "dtype": dtype,
        "use_safetensors": True,
        "local_files_only": True,
        "trust_remote_code": False,
    }
    variant = spec.options.get("variant")
    if variant and dtype == torch.float16 and _has_variant(source.folder, variant):
        options["variant"] = variant
    if not Settings.from_env().safety_checker and _components(index).get("safety_checker", (None, None))[0] is not None:
        options["safety_checker"] = None
    if wants_txt2img:
        txt2img = AutoPipelineForText2Image.from_pretrained(str(source.folder), **options)
        return txt2img, AutoPipelineForInpainting.from_pipe(txt2img) if wants_inpaint else None
    return None, AutoPipelineForInpainting.from_pretrained(str(source.folder), **options)


def _load_tiny_vae(spec: ModelSpec, device: str, dtype: torch.dtype):
    """The catalogue's tiny autoencoder, or None when the model has none or it is not on disk
    (runs that ask for the fast decoder then say how to get it)."""
    folder = spec.tiny_vae_folder()
    if folder is None:
        return None
    from diffusers import AutoencoderTiny

    tiny = AutoencoderTiny.from_pretrained(str(folder), torch_dtype=dtype, use_safetensors=True, local_files_only=True)
    return tiny.to(device).eval()


def _accelerate(spec: ModelSpec, pipe, device: str) -> str:
    """Hand the UNet to OpenVINO where core/engines/openvino.py keeps it; says which backend runs it."""
    from core.engines import openvino

    dtype = str(pipe.unet.dtype).removeprefix("torch.")
    if not openvino.enabled(device) or not openvino.accelerate(pipe.unet, spec.source, Settings.from_env().cache_dir / "openvino"):
        return f"PyTorch {dtype}"
    return f"OpenVINO {openvino.precision()}"


def _latent_family(pipe) -> str | None:
    """Which latent->RGB projection previews this model, or None if none fits."""
    unet = getattr(pipe, "unet", None)
    if unet is None or unet.config.get("out_channels") != 4:
        return None
    if getattr(pipe, "text_encoder_2", None) is not None or unet.config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd"


# ---------------------------------------------------------------------------------------------
# The engine


class DiffusionEngine:
    """A loaded diffusers model. Build it with `DiffusionEngine.load(spec)`."""

    def __init__(self, spec: ModelSpec, device: str, txt2img, inpaint, tiny_vae=None, backend: str = "PyTorch"):
        self.spec = spec
        self.device = device
        self.configuration = f"{backend} UNet, {'tiny autoencoder loaded' if tiny_vae is not None else 'no tiny autoencoder'}"
        self._txt2img = txt2img
        self._inpaint = inpaint
        main = txt2img or inpaint
        self._vaes = {"full": main.vae, "fast": tiny_vae}
        # A tokenizer is not thread-safe and the pipeline's belongs to the worker running it: pages count
        # prompt tokens on their own threads, with a copy of their own (a few MB), under a lock of its own.
        self._tokenizer = copy.deepcopy(main.tokenizer)
        self._tokenizer_lock = threading.Lock()
        # The model's own scheduler, never run itself: each call builds a fresh one from it.
        self._scheduler_class = type(main.scheduler)
        self._scheduler_config = main.scheduler.config
        self._latent_family = _latent_family(main)
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, spec: ModelSpec, device: str | None = None) -> DiffusionEngine:
        """Load from the Hub cache, a local folder or a single-file checkpoint, on `device`
        (default: STUDIO_DEVICE, else the best available), fp16 on GPUs and fp32 on CPUs."""
        device = devices.pick_device(device if device is not None else Settings.from_env().device)
        dtype = devices.pick_dtype(device)
        source = _resolve_source(spec)
        index = _read_index(spec, source)
        pipeline_class = _refuse_remote_code(spec, index)
        _require_safetensors(spec, source.folder, index)
        try:
            txt2img, inpaint = _load_pipelines(spec, source, index, pipeline_class, dtype)
            for pipe in filter(None, (txt2img, inpaint)):  # shared components: the second move is a no-op
                pipe.to(device)
                pipe.set_progress_bar_config(disable=True)
            tiny_vae = _load_tiny_vae(spec, device, dtype)
            backend = _accelerate(spec, txt2img or inpaint, device)
        except StudioError:
            raise
        except Exception as error:
            devices.release_memory(device)
            if out_of_memory_error(error) is not None:
                raise OutOfMemoryError(f"not enough memory to load {spec.name}; unload other models or pick a smaller one") from error
            logger.warning("loading %s failed", spec.id, exc_info=True)
            problem = f"incomplete or not a supported diffusers pipeline ({type(error).__name__})"
            if source.from_hub:
                detail = f"its downloaded files are {problem}; {_download_again(spec)}"
            else:
                detail = f"the files at its catalogue path are {problem}"
            raise _unavailable(spec, detail) from error
        if txt2img is None and inpaint is None:
            raise _unavailable(spec, "its catalogue entry lists no task this model can do")
        return cls(spec, device, txt2img, inpaint, tiny_vae, backend)

    # -- prompts -------------------------------------------------------------------------------

    @property
    def max_prompt_tokens(self) -> int:
        """Tokens the text encoder reads (start and end markers included); the rest is cut off."""
        return int(self._loaded_tokenizer().model_max_length)

    def prompt_token_count(self, text: str) -> int:
        """Tokens `text` takes, start and end markers included (compare with max_prompt_tokens). Safe from
        any thread while the pipeline runs: it never touches the pipeline's own tokenizer."""
        with self._tokenizer_lock:
            return len(self._loaded_tokenizer()(text, truncation=False, verbose=False).input_ids)

    # -- running -------------------------------------------------------------------------------

    def text_to_image(self, request: GenerateRequest, report: Reporter) -> Generated:
        with self._lock:
            pipe = self._pipeline(self._txt2img, "cannot generate images from text; pick a text-to-image model")
            self._check_size(pipe, request.width, request.height)
            self._use_decoder(pipe, request.decoder)
            scheduler = self._fresh_scheduler(request.scheduler)
            total = _steps_to_run(scheduler, request.num_inference_steps)
            pipe.scheduler = scheduler
            report(0, total)
            result = self._run(
                pipe,
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                width=request.width,
                height=request.height,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                num_images_per_prompt=request.num_images,
                generator=[_generator(image_seed(request.seed, i)) for i in range(request.num_images)],
                callback_on_step_end=self._step_reporter(report, total),
            )
        return result

    def inpaint(self, image: Image.Image, mask: Image.Image, request: InpaintRequest, report: Reporter) -> Generated:
        with self._lock:
            pipe = self._pipeline(self._inpaint, "cannot edit images; pick an inpainting model")
            if image.size != mask.size:
                raise BadParameterError(f"mask is {mask.size[0]}x{mask.size[1]} but the image is {image.size[0]}x{image.size[1]}")
            width, height = image.size
            self._check_size(pipe, width, height)
            self._use_decoder(pipe, request.decoder)
            scheduler = self._fresh_scheduler(request.scheduler)
            total = _steps_to_run(scheduler, request.num_inference_steps, request.strength)
            pipe.scheduler = scheduler
            report(0, total)
            result = self._run(
                pipe,
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                image=image.convert("RGB"),
                mask_image=mask.convert("L"),
                width=width,
                height=height,
                strength=request.strength,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                num_images_per_prompt=1,
                generator=_generator(image_seed(request.seed, 0)),
                callback_on_step_end=self._step_reporter(report, total),
            )
        return result

    def close(self) -> None:
        with self._lock:
            self._txt2img = self._inpaint = None
            self._tokenizer = None
            self._vaes = {"full": None, "fast": None}
        devices.release_memory(self.device)

    # -- helpers -------------------------------------------------------------------------------

    def _pipeline(self, pipe, refusal: str):
        if pipe is not None:
            return pipe
        self._loaded_tokenizer()
        raise BadParameterError(f"{self.spec.name} {refusal}")

    def _loaded_tokenizer(self):
        if self._tokenizer is None:
            raise EngineError(f"{self.spec.name} was unloaded; run the request again to reload it")
        return self._tokenizer

    def _use_decoder(self, pipe, decoder: str | None) -> None:
        """Put the run's autoencoder in the pipeline (None: the model's own)."""
        vae = self._vaes[decoder or "full"]
        if vae is None:
            where = "on a connected machine run" if hub_offline() else "run"
            raise ModelUnavailableError(
                f"the fast decoder of {self.spec.name} ({self.spec.tiny_vae}) is not on disk; {where}: "
                f"python -m core download {self.spec.id}, or choose the full decoder"
            )
        if pipe.vae is not vae:
            pipe.vae = vae

    def _check_size(self, pipe, width: int, height: int) -> None:
        multiple = int(getattr(pipe, "vae_scale_factor", 8))
        if width % multiple or height % multiple:
            raise BadParameterError(f"width and height must be multiples of {multiple} for {self.spec.name}, got {width}x{height}")

    def _fresh_scheduler(self, name: str | None):
        """A new scheduler for one run (schedulers keep per-run state): the named sampler, or the
        model's own when `name` is None, configured from the model's scheduler settings."""
        if name is None:
            return self._scheduler_class.from_config(self._scheduler_config)
        if name not in SCHEDULER_CLASSES:
            raise BadParameterError(f"scheduler must be one of {', '.join(SCHEDULER_CLASSES)}; got {name!r}")
        class_name, settings = SCHEDULER_CLASSES[name]
        return getattr(diffusers, class_name).from_config(self._scheduler_config, **settings)

    def _step_reporter(self, report: Reporter, total: int) -> Callable:
        family, tiny = self._latent_family, self._vaes["fast"]

        def on_step_end(pipe, index: int, timestep, tensors: dict) -> dict:
            preview_of: Callable[[], Image.Image] | None = None
            if family is not None:
                # A copy of the first image's latents (a few KB): the preview may be drawn later.
                latents = tensors["latents"][:1].detach().clone()

                def preview_of() -> Image.Image:
                    if tiny is not None:
                        return preview.tiny_decoded(latents, tiny)
                    return preview.latents_to_rgb(latents, family)

            report(index + 1, total, preview_of)  # raises CancelledError to stop: it propagates
            return tensors

        return on_step_end

    def _run(self, pipe, **arguments) -> Generated:
        try:
            with torch.inference_mode():
                output = pipe(**arguments, output_type="pil", return_dict=True)
        except StudioError:  # CancelledError from the reporter included: the run stops, nothing returns
            raise
        except Exception as error:
            memory = out_of_memory_error(error)
            if memory is not None:
                devices.release_memory(self.device)
                raise memory from error
            logger.exception("%s failed while running", self.spec.id)
            raise EngineError(f"{self.spec.name} failed while running ({type(error).__name__}); see the server log") from error
        images = [image.convert("RGB") for image in output.images]
        flags = getattr(output, "nsfw_content_detected", None)  # only pipelines with a safety checker have it
        filtered = tuple(bool(flag) for flag in flags) if flags is not None else (False,) * len(images)
        return Generated(images, filtered)


def _generator(seed: int) -> torch.Generator:
    # A CPU generator: the starting noise, and so the picture, is the same on every device.
    return torch.Generator(device="cpu").manual_seed(seed)


def _steps_to_run(scheduler, num_inference_steps: int, strength: float = 1.0) -> int:
    """How many denoising steps the pipeline will run (and call back after): the scheduler's
    timesteps for this step count, minus those `strength` < 1 skips. Worked out on a copy of
    the scheduler, as diffusers' img2img/inpaint `get_timesteps` does."""
    probe = type(scheduler).from_config(scheduler.config)
    probe.set_timesteps(num_inference_steps, device="cpu")
    kept = min(int(num_inference_steps * strength), num_inference_steps)
    skipped = max(num_inference_steps - kept, 0)
    return len(probe.timesteps) - skipped * probe.order
