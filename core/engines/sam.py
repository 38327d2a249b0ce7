"""Click to select: a Segment Anything model on onnxruntime turns points and a box into a mask.

The export this targets is MobileSAM as published in ONNX by Acly (`Acly/MobileSAM` on the Hub,
MIT; weights Apache-2.0): a TinyViT image encoder (28 MB, ~10x lighter than SAM's ViT-B, the best
CPU-friendly member of the family with a public ONNX export of both halves) and SAM's own prompt
decoder (16 MB, the same for SAM ViT-B/H, so an official SAM decoder export also fits):

    mobile_sam_image_encoder.onnx
      input  "input_image"       float32 [H, W, 3]  RGB 0..255, already resized so the LONGER side
                                                   is 1024 (the export normalises with SAM's pixel
                                                   mean/std and pads right/bottom to 1024 itself)
      output "image_embeddings"  float32 [1, 256, 64, 64]
    sam_mask_decoder_single.onnx  (segment_anything.utils.onnx.SamOnnxModel, return_single_mask)
      input  "image_embeddings"  float32 [1, 256, 64, 64]
             "point_coords"      float32 [1, N, 2]   (x, y) in the RESIZED frame: x * new_w / w,
                                                   y * new_h / h (SAM's ResizeLongestSide.apply_coords)
             "point_labels"      float32 [1, N]      1 include, 0 exclude, 2 box top-left,
                                                   3 box bottom-right, -1 padding point
             "mask_input"        float32 [1, 1, 256, 256]  a previous low-res mask, or zeros
             "has_mask_input"    float32 [1]          0 (no previous mask)
             "orig_im_size"      float32 [2]          (h, w) the masks are scaled to
      output "masks"             float32 [1, 1, h, w] logits: > 0 is the object
             "iou_predictions"   float32 [1, 1]
             "low_res_masks"     float32 [1, 1, 256, 256]

Conventions kept here (the classic bugs): the resized size is (int(h * s + 0.5), int(w * s + 0.5))
with s = 1024 / max(h, w), and x and y are scaled by their own factor; without a box, SAM's demo
adds a padding point (0, 0) with label -1. The decoder is asked for masks at the resized size
(`orig_im_size` = resized h, w; its own post-processing then only crops the padding) and the
logits are scaled to the photo here, so a click on a 12 MP photo does not make the decoder
resample 12 MP of floats. An encoder taking [1, 3, 1024, 1024] (already normalised and padded, as
samexporter's SAM ViT-B exports do) is recognised by its rank and fed that way.

The image embedding is the expensive half (once per photo); it is kept per photo digest, so each
further click runs only the decoder.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.catalogue import ModelSpec, hub_offline
from core.errors import ModelUnavailableError

log = logging.getLogger(__name__)

SIDE = 1024  # SAM's input side
LOW_RES = 256  # the decoder's mask_input side
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
ENCODER_INPUT, ENCODER_OUTPUT = "input_image", "image_embeddings"
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
INCLUDE, EXCLUDE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT, PADDING = 1.0, 0.0, 2.0, 3.0, -1.0
EMBEDDINGS_KEPT = 4  # photos whose embedding stays in memory (1 MiB each)


def engine_version() -> str:
    try:
        return f"sam-onnxruntime-{metadata.version('onnxruntime')}-1"
    except metadata.PackageNotFoundError:
        return "sam-onnxruntime-missing-1"


Box = tuple[float, float, float, float]  # left, top, right, bottom in the photo's pixels
Point = tuple[float, float, bool]  # x, y in the photo's pixels; True = include


def resized_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the photo scaled so its longer side is SIDE (SAM's get_preprocess_shape)."""
    width, height = size
    scale = SIDE / max(width, height)
    return int(width * scale + 0.5), int(height * scale + 0.5)


def to_model_coords(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Photo pixels (x, y) -> the resized frame, each axis by its own factor (apply_coords)."""
    new_width, new_height = resized_size(size)
    return points * np.array([new_width / size[0], new_height / size[1]], np.float32)


class SamSegmenter:
    def __init__(self, spec: ModelSpec, encoder: Any, decoder: Any):
        self.spec = spec
        self._encoder, self._decoder = encoder, decoder
        self._encoder_rank = _check_interface(spec, encoder, decoder)
        self._embeddings: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # onnxruntime sessions may run concurrently; the LRU may not

    @classmethod
    def load(cls, spec: ModelSpec) -> SamSegmenter:
        import onnxruntime

        encoder_file, decoder_file = model_files(spec)
        available = onnxruntime.get_available_providers()
        providers = [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]
        # The decoder is small: one thread does a click in about the CPU time two do, without the
        # thread pool's spinning, which on a shared CPU doubles its CPU seconds (bench/segment_click.py).
        decoder_options = onnxruntime.SessionOptions()
        decoder_options.intra_op_num_threads = 1
        try:
            encoder = onnxruntime.InferenceSession(str(encoder_file), providers=providers)
            decoder = onnxruntime.InferenceSession(str(decoder_file), decoder_options, providers=providers)
        except Exception as error:
            log.warning("onnxruntime could not open %s", spec.id, exc_info=True)
            raise ModelUnavailableError(
                f"{spec.name} could not be loaded: an ONNX file is damaged; download it again"
            ) from error
        return cls(spec, encoder, decoder)

    # 1. Once per photo: the image embedding.
    def embedding(self, image: Image.Image, digest: str) -> np.ndarray:
        with self._lock:
            cached = self._embeddings.get(digest)
            if cached is not None:
                self._embeddings.move_to_end(digest)
                return cached
        resized = np.asarray(
            image.convert("RGB").resize(resized_size(image.size), Image.Resampling.BILINEAR), np.float32
        )
        if self._encoder_rank == 3:
            feed = resized
        else:  # an export without its own preprocessing: normalise, pad to SIDE x SIDE, CHW
            padded = np.zeros((SIDE, SIDE, 3), np.float32)
            padded[: resized.shape[0], : resized.shape[1]] = (resized - PIXEL_MEAN) / PIXEL_STD
            feed = padded.transpose(2, 0, 1)[None]
        (embedding,) = self._encoder.run([ENCODER_OUTPUT], {ENCODER_INPUT: np.ascontiguousarray(feed)})
        with self._lock:
            self._embeddings[digest] = embedding
            while len(self._embeddings) > EMBEDDINGS_KEPT:
                self._embeddings.popitem(last=False)
        return embedding

    def has_embedding(self, digest: str) -> bool:
        with self._lock:
            return digest in self._embeddings

    # 2. Per click: the decoder only.
    def segment(self, image: Image.Image, digest: str, points: Sequence[Point], box: Box | None = None) -> Image.Image:
        """The "L" mask (255 = selected) at the photo's size (prompts checked by SegmentRequest)."""
        embedding = self.embedding(image, digest)
        coords = [(x, y) for x, y, _ in points]
        labels = [INCLUDE if include else EXCLUDE for _, _, include in points]
        if box is not None:
            coords += [box[:2], box[2:]]
            labels += [BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]
        model_coords = to_model_coords(np.array(coords, np.float32).reshape(-1, 2), image.size)
        if box is None:  # SAM's demo: a padding point when there is no box
            model_coords = np.concatenate([model_coords, np.zeros((1, 2), np.float32)])
            labels.append(PADDING)
        new_width, new_height = resized_size(image.size)
        feeds = {
            "image_embeddings": embedding,
            "point_coords": model_coords[None].astype(np.float32),
            "point_labels": np.array([labels], np.float32),
            "mask_input": np.zeros((1, 1, LOW_RES, LOW_RES), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([new_height, new_width], np.float32),
        }
        return _mask_at(self._decode(feeds), image.size)

    def _decode(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (logits,) = self._decoder.run(["masks"], feeds)
        return logits[0, 0]

    def close(self) -> None:
        self._encoder = self._decoder = None
        self._embeddings.clear()


def _mask_at(logits: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Logits at the resized size -> a 0/255 mask at the photo's size: thresholded at 0 (SAM's
    mask_threshold) there, then scaled bilinearly and cut at half, which keeps the edge smooth and
    costs ~20x less than scaling 12 MP of float logits (OpenCV: ~10 ms of CPU for 12 MP, whatever
    the selection; scaling only the selection's box with PIL was not cheaper)."""
    import cv2

    small = np.where(logits > 0.0, 255, 0).astype(np.uint8)
    if small.shape[::-1] == size:
        return Image.fromarray(small)
    scaled = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    cv2.threshold(scaled, 127, 255, cv2.THRESH_BINARY, dst=scaled)
    return Image.fromarray(scaled)


def _check_interface(spec: ModelSpec, encoder: Any, decoder: Any) -> int:
    """The encoder input's rank (3: [H, W, 3] with its own preprocessing; 4: [1, 3, 1024, 1024])."""
    inputs = {node.name: node for node in encoder.get_inputs()}
    outputs = {node.name for node in encoder.get_outputs()}
    if ENCODER_INPUT not in inputs or ENCODER_OUTPUT not in outputs or len(inputs[ENCODER_INPUT].shape) not in (3, 4):
        raise ModelUnavailableError(
            f"{spec.name}: the encoder must take 'input_image' ([H, W, 3] or [1, 3, 1024, 1024]) and give 'image_embeddings'"
        )
    names = {node.name for node in decoder.get_inputs()}
    if names != set(DECODER_INPUTS) or "masks" not in {node.name for node in decoder.get_outputs()}:
        raise ModelUnavailableError(
            f"{spec.name}: the decoder must be SAM's ONNX export (inputs {', '.join(DECODER_INPUTS)}; output 'masks')"
        )
    return len(inputs[ENCODER_INPUT].shape)


def model_files(spec: ModelSpec) -> tuple[Path, Path]:
    """(encoder, decoder): local `path` + options.decoder beside it, or `hub` + `file` + options.decoder."""
    decoder_name = spec.options.get("decoder")
    if not decoder_name:
        raise ModelUnavailableError(f"{spec.name} needs options.decoder (the decoder's file name) in the catalogue")
    if spec.path:
        encoder = Path(spec.path).expanduser()
        decoder = encoder.with_name(decoder_name)
        if not (encoder.is_file() and decoder.is_file()):
            raise ModelUnavailableError(
                f"{spec.name} is not available: its .onnx files are missing; fix 'path' in the catalogue"
            )
        return encoder, decoder
    if not (spec.hub and spec.file):
        raise ModelUnavailableError(f"{spec.name} needs 'hub' and 'file', or 'path', in the catalogue")
    from huggingface_hub import hf_hub_download

    try:
        return tuple(
            Path(hf_hub_download(spec.hub, name, revision=spec.revision, local_files_only=hub_offline()))
            for name in (spec.file, decoder_name)
        )
    except Exception as error:
        log.debug("fetching %s failed", spec.id, exc_info=True)
        raise ModelUnavailableError(f"{spec.name} is not available: {spec.download_hint()}") from error


__all__ = ["Box", "Point", "SamSegmenter", "engine_version", "resized_size", "to_model_coords"]
