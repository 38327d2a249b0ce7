"""LaMa object removal on onnxruntime: runs on CPU everywhere, on CUDA where onnxruntime-gpu is installed.

The public export this targets, `Carve/LaMa-ONNX` / `lama_fp32.onnx` (its interface as the code that
uses it feeds it; the file itself is 208 MB and not needed to read this):

    input  "image"   float32 [1, 3, 512, 512]  RGB in [0, 1]
    input  "mask"    float32 [1, 1, 512, 512]  1 = fill, 0 = keep (binary)
    output "output"  float32 [1, 3, 512, 512]  RGB in [0, 255]

Some LaMa exports answer in [0, 1] instead, and some give the batch axis a name instead of 1, so
both are read off the model and its answer rather than assumed (see `answers_in_0_255`). The side
comes from the model: a fixed-size export gets the region resized to its side and back; an export
with free height and width gets the region at its own size (the runner already made it a multiple
of `size_multiple`). The runner crops around the mask and pastes back only masked pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.catalogue import ModelSpec, hub_offline
from core.engines.base import Generated, Reporter
from core.errors import BadParameterError, ModelUnavailableError
from core.requests import GenerateRequest, InpaintRequest

log = logging.getLogger(__name__)

IMAGE_INPUT = "image"
MASK_INPUT = "mask"
_TENSOR_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
# A [0, 1] export overshoots 1 by a hair at most; anything above this is a [0, 255] answer.
_UNIT_RANGE_CEILING = 1.5


def engine_version() -> str:
    """For cache keys, without importing onnxruntime (whichever build of it is installed)."""
    for distribution in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            return f"lama-onnxruntime-{metadata.version(distribution)}-1"
        except metadata.PackageNotFoundError:
            continue
    return "lama-onnxruntime-missing-1"


@dataclass(frozen=True)
class _Interface:
    """What the loaded export expects, checked once at load time."""

    output: str
    side: tuple[int, int] | None  # (width, height) of a fixed-size export; None = any multiple of 8
    dtype: Any


class LamaEngine:
    def __init__(self, spec: ModelSpec, session: Any):
        self.spec = spec
        self._session = session
        self._interface = _read_interface(spec, session)

    @classmethod
    def load(cls, spec: ModelSpec) -> LamaEngine:
        model_file = _model_file(spec)
        import onnxruntime

        available = onnxruntime.get_available_providers()
        providers = [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]
        try:
            session = onnxruntime.InferenceSession(str(model_file), providers=providers)
        except Exception as error:  # a truncated download or a file that is not ONNX
            log.warning("onnxruntime could not open the model for %s", spec.id, exc_info=True)
            raise ModelUnavailableError(
                f"{spec.name} could not be loaded: its ONNX file is damaged or not a model; download it again"
            ) from error
        log.info("loaded %s on %s", spec.id, session.get_providers()[0])
        return cls(spec, session)

    @property
    def providers(self) -> list[str]:
        return [] if self._session is None else list(self._session.get_providers())

    def text_to_image(self, request: GenerateRequest, report: Reporter) -> Generated:
        raise BadParameterError(f"{self.spec.name} cannot generate images from text")

    def inpaint(self, image: Image.Image, mask: Image.Image, request: InpaintRequest, report: Reporter) -> Generated:
        if self._session is None:
            raise ModelUnavailableError(f"{self.spec.name} was released; run the job again")
        # 1. Cancel point: the reporter raises here if the job was cancelled while it waited.
        report(0, 1)
        # 2. At the export's own size (fixed exports), the mask kept binary.
        size = image.size
        side = self._interface.side or size
        rgb = image.convert("RGB")
        if rgb.size != side:
            rgb = rgb.resize(side, Image.Resampling.BICUBIC)
            mask = mask.resize(side, Image.Resampling.NEAREST)
        image01 = np.asarray(rgb, dtype=np.float32) / 255.0
        keep = np.asarray(mask.convert("L")) < 128
        # 3. Masked pixels are zeroed before the model sees them, as LaMa was trained.
        dtype = self._interface.dtype
        feeds = {
            IMAGE_INPUT: np.ascontiguousarray((image01 * keep[..., None]).transpose(2, 0, 1)[None], dtype=dtype),
            MASK_INPUT: np.ascontiguousarray((~keep)[None, None], dtype=dtype),
        }
        (output,) = self._session.run([self._interface.output], feeds)
        # 4. Back to 8-bit RGB at the region's size.
        answer = np.transpose(np.asarray(output[0], dtype=np.float32), (1, 2, 0))
        if answers_in_0_255(answer, image01, keep):
            answer = answer / 255.0
        filled = Image.fromarray((np.clip(answer, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")
        if filled.size != size:
            filled = filled.resize(size, Image.Resampling.BICUBIC)
        report(1, 1)
        return Generated([filled])

    def close(self) -> None:
        """Drop the session; onnxruntime frees its memory when the last reference goes."""
        self._session = None


def answers_in_0_255(answer: np.ndarray, image01: np.ndarray, keep: np.ndarray) -> bool:
    """Whether an HxWx3 answer is in [0, 255] (else [0, 1]), read off the answer itself.

    Values above 1.5 only come from a [0, 255] export. At or below it the answer is either a
    [0, 1] one or a [0, 255] one that is near-black throughout; LaMa reproduces the kept pixels,
    so whichever reading matches the input there better decides. (Reading a near-black [0, 255]
    answer as [0, 1] would turn a dark region white.)
    """
    if float(answer.max()) > _UNIT_RANGE_CEILING:
        return True
    if not keep.any():
        return False
    known_answer, known_input = answer[keep], image01[keep]
    return float(np.abs(known_answer / 255.0 - known_input).mean()) < float(np.abs(known_answer - known_input).mean())


def _model_file(spec: ModelSpec) -> Path:
    """The .onnx file: a local `path`, or `hub` + `file` from the Hugging Face cache."""
    if spec.path:
        path = Path(spec.path).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(f"{spec.name} is not available: its .onnx file is missing; fix 'path' in the catalogue")
        return path
    if not (spec.hub and spec.file):
        raise ModelUnavailableError(f"{spec.name} needs 'hub' and 'file', or 'path', in the catalogue")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(spec.hub, spec.file, revision=spec.revision, local_files_only=hub_offline()))
    except Exception as error:  # not cached, offline, network or auth: the same advice for all
        log.debug("fetching %s failed", spec.id, exc_info=True)
        raise ModelUnavailableError(f"{spec.name} is not available: {spec.download_hint()}") from error


def _read_interface(spec: ModelSpec, session: Any) -> _Interface:
    expected = (
        f"{spec.name} is not a LaMa export this engine can run: it needs inputs 'image' [1, 3, H, W] and "
        "'mask' [1, 1, H, W] and one [1, 3, H, W] output"
    )
    inputs = {node.name: node for node in session.get_inputs()}
    outputs = session.get_outputs()
    if set(inputs) != {IMAGE_INPUT, MASK_INPUT} or len(outputs) != 1:
        raise ModelUnavailableError(expected)
    image, mask = inputs[IMAGE_INPUT], inputs[MASK_INPUT]
    if len(image.shape) != 4 or len(mask.shape) != 4 or image.shape[1] != 3 or mask.shape[1] != 1:
        raise ModelUnavailableError(expected)
    if image.type not in _TENSOR_TYPES or mask.type != image.type:
        raise ModelUnavailableError(f"{spec.name}: inputs must be float32 or float16 tensors, got {image.type}")
    height, width = image.shape[2], image.shape[3]
    side = (width, height) if isinstance(width, int) and isinstance(height, int) else None
    return _Interface(output=outputs[0].name, side=side, dtype=_TENSOR_TYPES[image.type])
