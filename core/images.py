"""Images in: load and validate uploads, normalise their colour mode, and composite what a model is given (RGB).

Every image leaving this module is PIL "RGB", or "RGBA" when some pixel is actually transparent (the alpha is kept
for the output and composited deliberately before any model sees the pixels, see `to_model_rgb`).
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import threading
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps

from core.admission import DECODE_BYTES_PER_PIXEL, DECODES
from core.errors import BadImageError, OutOfMemoryError
from core.provenance import PNG_SIGNATURE
from core.settings import ImageLimits

log = logging.getLogger(__name__)

_WARNINGS_LOCK = threading.Lock()

# Bitmap formats whose Pillow decoders are self-contained. Naming them also stops Pillow from probing every other
# plugin on untrusted bytes (EPS, for one, would hand the file to Ghostscript on load).
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "PPM", "ICO", "QOI")

_NOT_AN_IMAGE = "unsupported image: not a JPEG, PNG, WebP or other bitmap (SVG is not supported)"
_CORRUPT = "image file is truncated or corrupt"
_TEXT_TOO_LARGE = "image metadata is too large (an oversized PNG text chunk)"

_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
# Text a PNG may carry, as stored: generation parameters take a few KB. Compressed chunks are also held to
# Pillow's caps once decompressed (1 MB each, 64 MB together).
MAX_TEXT_CHUNK_BYTES = 1024 * 1024
MAX_TEXT_TOTAL_BYTES = 4 * 1024 * 1024

# What Pillow's decoders raise on malformed data (zlib.error and struct.error included: some plugins let them escape).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)

# Models never see raw alpha: a transparent pixel's RGB is arbitrary (often black), which a model would take as
# content. Compositing over a neutral mid-grey gives them the least suggestive colour to work from.
MODEL_BACKGROUND = (127, 127, 127)


def load_image(source: bytes | str | os.PathLike, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode an uploaded image, refusing anything unsafe or broken with a one-line BadImageError."""
    data = _read(source)
    # 1. Cheap refusals on the raw bytes.
    if not data:
        raise BadImageError("unsupported image: the file is empty")
    if _looks_like_svg(data):
        raise BadImageError(_NOT_AN_IMAGE)
    if data.startswith(PNG_SIGNATURE):
        _check_png_text(data)
    # 2. Header only: Image.open parses the header and decodes no pixel. Pillow's own bomb check runs here too;
    #    its warning becomes an error so no oversized image slips through on a warning nobody reads. The warnings
    #    filters are process-wide and catch_warnings is not thread-safe, hence the lock (held for the header only).
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise BadImageError(_bomb_message(error, limits)) from None
        except Image.UnidentifiedImageError:
            raise BadImageError(_NOT_AN_IMAGE) from None
        except _DECODE_ERRORS as error:
            raise BadImageError(_decode_message(error)) from None
    # 3. The declared size against our limits, before decoding. EXIF orientation only swaps the sides, and every
    #    rule below is symmetric in them, so checking before the rotation is the same as checking after it.
    _check_size(image.size, limits)
    # 4. Decode fully now, so truncated or corrupt files fail here rather than later in a model; with other
    #    decodes, within the host's memory (core/admission.py).
    with DECODES.hold(image.width * image.height * DECODE_BYTES_PER_PIXEL):
        try:
            try:
                if image.format == "PNG":
                    _verify_png(data)
                if getattr(image, "n_frames", 1) > 1:
                    image.seek(0)  # animated: always the first frame
                image.load()
                _make_upright(image)
            except _DECODE_ERRORS as error:
                image.close()
                raise BadImageError(_decode_message(error)) from None
            # The image holds no file handle (the bytes were read above), only a reference to them while it lives:
            # cheaper than copying a large decoded image into a detached one.
            _check_size(image.size, limits)
            return normalize_mode(image)
        except MemoryError:  # the host is short of memory now: the app goes on, this upload is refused
            raise OutOfMemoryError(
                f"not enough memory to decode this image now ({_megapixels(image.width * image.height)} MP); "
                "try a smaller image, or again in a minute"
            ) from None


def normalize_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> "RGB", or "RGBA" when some pixel has alpha < 255. High bit depths are scaled, never clipped."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _grey_to_rgb(_scale_16bit(np.asarray(image)))
    if mode == "I":
        values = np.asarray(image)
        low, high = int(values.min()), int(values.max())
        fits_16bit = low >= 0 and high <= 65535
        return _grey_to_rgb(_scale_16bit(values) if fits_16bit else _stretch(values, low, high))
    if mode == "F":
        return _grey_to_rgb(_float_to_8bit(np.asarray(image)))
    has_alpha = "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info
    target = "RGBA" if has_alpha else "RGB"
    try:
        converted = image if image.mode == target and "transparency" not in image.info else image.convert(target)
    except ValueError:
        raise BadImageError(f"unsupported image: colour mode {mode} cannot be converted to RGB") from None
    if has_alpha and converted.getchannel("A").getextrema()[0] == 255:
        return converted.convert("RGB")  # fully opaque: the alpha channel carries nothing
    return converted


def to_model_rgb(image: Image.Image) -> Image.Image:
    """What a model is given: RGB as is; RGBA composited over `MODEL_BACKGROUND` (see why there)."""
    if image.mode != "RGB":
        image = normalize_mode(image)
    if image.mode == "RGB":
        return image
    composite = Image.new("RGB", image.size, MODEL_BACKGROUND)
    composite.paste(image, mask=image.getchannel("A"))
    return composite


# --- reading and checking -----------------------------------------------------------------------------------------


def _read(source: bytes | str | os.PathLike) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    try:
        with open(source, "rb") as file:
            return file.read()
    except OSError:
        raise BadImageError("cannot read the image file: it is missing or not readable") from None


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) or b"<svg" in head


def _check_png_text(data: bytes) -> None:
    """Refuse PNG text chunks over the caps, whatever their kind, from the chunk lengths alone.

    Pillow caps a compressed chunk's decompressed size (`MAX_TEXT_CHUNK`), not an uncompressed `tEXt`, which it
    reads whole however large. Walking the chunk headers costs nothing next to decoding."""
    offset, total = len(PNG_SIGNATURE), 0
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind in _PNG_TEXT_CHUNKS:
            total += length
            if length > MAX_TEXT_CHUNK_BYTES or total > MAX_TEXT_TOTAL_BYTES:
                raise BadImageError(_TEXT_TOO_LARGE)
        elif kind == b"IEND":
            return
        offset += 12 + length  # length, kind, payload, CRC


def _check_size(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    pixels = width * height
    max_pixels = _effective_max_pixels(limits)
    if pixels > max_pixels:
        raise BadImageError(
            f"image is {width}x{height} ({_megapixels(pixels)} MP); the limit is {_megapixels(max_pixels)} MP"
        )
    if max(width, height) > limits.max_side:
        raise BadImageError(f"image is {width}x{height}; the limit is {limits.max_side} px per side")
    if min(width, height) < limits.min_side:
        raise BadImageError(f"image is {width}x{height}; each side must be at least {limits.min_side} px")
    aspect = max(width, height) / min(width, height)
    if aspect > limits.max_aspect:
        raise BadImageError(
            f"image is {width}x{height} (aspect ratio {aspect:.0f}:1); the limit is {limits.max_aspect:g}:1"
        )


def _effective_max_pixels(limits: ImageLimits) -> int:
    # Pillow's bomb threshold also holds when an operator raises our limit past it (the warning-as-error, again).
    return min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)


def _bomb_message(error: Exception, limits: ImageLimits) -> str:
    # Pillow raised before handing back the header, so the pixel count comes from its message when it has one.
    found = re.search(r"\((\d+) pixels\)", str(error))
    declared = f"{_megapixels(int(found.group(1)))} MP" if found else "too many pixels"
    return f"image is too large to decode safely ({declared}); the limit is {_megapixels(_effective_max_pixels(limits))} MP"


def _decode_message(error: Exception) -> str:
    if "MAX_TEXT_CHUNK" in str(error) or "text chunks" in str(error):
        return _TEXT_TOO_LARGE
    return _CORRUPT


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.0f}" if pixels >= 10_000_000 else f"{pixels / 1_000_000:.1f}".rstrip("0").rstrip(".")


def _verify_png(data: bytes) -> None:
    # Decoding a PNG does not check the chunk CRCs; verify() does, but leaves its image unusable, hence its own open.
    with Image.open(io.BytesIO(data), formats=("PNG",)) as probe:
        probe.verify()


def _make_upright(image: Image.Image) -> None:
    """Turn the decoded image upright per its EXIF orientation, in place."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        # A broken EXIF block should not cost the user a photo that decodes fine; say so to the operator.
        log.warning("ignoring unreadable EXIF orientation in an uploaded %s image", image.format)


# --- mode conversion ------------------------------------------------------------------------------------------------


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values.astype(np.float64) - low) * (255.0 / (high - low))).astype(np.uint8)


def _float_to_8bit(values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise BadImageError("unsupported image: it has pixels that are not numbers (NaN or infinite)")
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return np.round(values.astype(np.float64) * 255.0).astype(np.uint8)
    return _stretch(values, low, high)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(grey).convert("RGB")
