"""Extending the canvas (outpainting): the new frame's geometry, and filling it tile by tile.

The photo is placed in a larger frame; everything outside it is the mask, and the photo's own
pixels are copied back untouched at the end (byte-identical). The new band is filled along each
grown side in crops ("strips") that hold the band plus as much of the photo beside it as context:

1. The whole new area starts as the nearest edge pixel plus a little noise (cheap and never blank).
2. For each side (left and right over the photo's rows, then top and bottom across the full new
   width, so corners see what the sides became), the strip is cut into the fewest overlapping tiles
   whose aspect is at most `MAX_TILE_ASPECT` and which shrink by at most `MAX_DOWNSCALE` to reach the
   model's working resolution; tiles go from the photo outwards.
3. Each tile is fitted to the working resolution (as any edit is). A generative model's tile is
   first pre-filled by a remover (LaMa or OpenCV, at that small size) so the diffusion starts from
   plausible colours, then repainted from the prompt; a remover's own answer is the result.
4. The tile's answer is blended in: fully over new pixels not filled yet, over a ramp of `SEAM`
   pixels into what an earlier tile made (the seam blend), never over the photo.

So the model runs a handful of times at its working resolution whatever the photo's size: a long
edge gets one tall strip, scaled down, rather than a row of full-resolution tiles (the cost of a
model call does not grow with the photo; resizing and compositing grow with the band only).

A remover with no working resolution of its own (OpenCV) fills each strip whole, scaled to
`NATIVE_ENGINE_RESOLUTION`² and back: its fill of a wide band is a smooth continuation of the edge
whatever the scale, so its cost stays that of one small call (short enough to run in process,
core/engines/opencv.py) instead of growing with the band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from core.errors import BadParameterError
from core.images import to_model_rgb
from core.region import Fit, plan_fit

Box = tuple[int, int, int, int]
Remover = Callable[[Image.Image, Image.Image], Image.Image]  # (RGB, "L" mask) -> RGB of the same size
Paint = Callable[[Image.Image, Image.Image, int], Image.Image]  # (RGB, "L" mask, tile index) -> RGB

# Where the photo sits in the new frame, as fractions of the added width and height on its left/top.
ANCHORS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "left": (0.0, 0.5),
    "right": (1.0, 0.5),
    "top": (0.5, 0.0),
    "bottom": (0.5, 1.0),
    "top-left": (0.0, 0.0),
    "top-right": (1.0, 0.0),
    "bottom-left": (0.0, 1.0),
    "bottom-right": (1.0, 1.0),
}
MAX_ASPECT_TERM = 100  # "16:9" terms; "1000:1" is not an aspect anyone means
MAX_TILE_ASPECT = 3.0  # diffusion models degrade on very long, thin crops
MAX_DOWNSCALE = 4.0  # a tile shrinks by at most this (per side) to reach the working resolution
SEAM = 48  # pixels (at the photo's scale) over which a tile fades into its predecessor's pixels
NOISE = 10  # the edge-extended start's noise, uniform in ±NOISE grey levels (std ~6): texture for a
# diffusion model to work on (integer noise: a fifth of the cost of normal floats over a 12 MP band)
# The area (as a square's side) at which a native-size remover (OpenCV) fills a whole strip: a strip
# half band, half photo then has ~33 k new pixels, which OpenCV's estimate keeps in process (< 0.5 s).
NATIVE_ENGINE_RESOLUTION = 256
PREFILL_SIDE = 160  # the OpenCV pre-fill's longest side


@dataclass(frozen=True)
class Sides:
    """How many pixels to add on each side."""

    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    def check(self) -> None:
        for name in ("left", "top", "right", "bottom"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadParameterError(f"{name} must be a whole number of pixels, 0 or more, got {value!r}")
        if not any((self.left, self.top, self.right, self.bottom)):
            raise BadParameterError("nothing to extend: give pixels for at least one side, or a target aspect")

    def new_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return size[0] + self.left + self.right, size[1] + self.top + self.bottom

    def photo_box(self, size: tuple[int, int]) -> Box:
        """Where the photo sits in the new frame."""
        return self.left, self.top, self.left + size[0], self.top + size[1]


def parse_aspect(text: str) -> tuple[int, int]:
    """'16:9' -> (16, 9)."""
    parts = str(text).replace("/", ":").split(":") if isinstance(text, str) else []
    try:
        width, height = (int(part.strip()) for part in parts)
    except ValueError:
        raise BadParameterError(f"aspect must look like 16:9, got {text!r}") from None
    if not (1 <= width <= MAX_ASPECT_TERM and 1 <= height <= MAX_ASPECT_TERM):
        raise BadParameterError(f"aspect terms must be whole numbers from 1 to {MAX_ASPECT_TERM}, got {text!r}")
    return width, height


def sides_for_aspect(size: tuple[int, int], aspect: str, anchor: str = "center") -> Sides:
    """The pixels to add so the frame has `aspect`, only growing (never cropping), the photo at `anchor`."""
    if anchor not in ANCHORS:
        raise BadParameterError(f"anchor must be one of {', '.join(ANCHORS)}; got {anchor!r}")
    aspect_w, aspect_h = parse_aspect(aspect)
    width, height = size
    # Grow the side that is too short; the other one stays.
    if width * aspect_h < height * aspect_w:
        extra_w, extra_h = round(height * aspect_w / aspect_h) - width, 0
    else:
        extra_w, extra_h = 0, round(width * aspect_h / aspect_w) - height
    if extra_w <= 0 and extra_h <= 0:
        raise BadParameterError(f"the photo is already {aspect_w}:{aspect_h}; nothing to extend")
    fx, fy = ANCHORS[anchor]
    left, top = round(extra_w * fx), round(extra_h * fy)
    return Sides(left=left, top=top, right=extra_w - left, bottom=extra_h - top)


# -- the new frame -----------------------------------------------------------------------------


def extended(image: Image.Image, sides: Sides, seed: int = 0, noise: bool = True) -> tuple[Image.Image, Image.Image]:
    """(frame, mask): the photo in its new frame with the new area edge-extended plus noise (step 1;
    `noise` False: edge-extended only, for a remover that replaces it all), and the "L" mask, 255 over
    the new area. Work outside the copy of the photo follows the band."""
    frame, mask = _extended_arrays(image, sides, seed, noise)
    return Image.fromarray(frame), Image.fromarray(mask)


def _extended_arrays(image: Image.Image, sides: Sides, seed: int, noise: bool) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(image)
    width, height = image.size
    new_width, new_height = sides.new_size(image.size)
    left, top, right, bottom = sides.photo_box(image.size)
    frame = np.empty((new_height, new_width, *pixels.shape[2:]), np.uint8)
    frame[top:bottom, left:right] = pixels
    frame[top:bottom, :left] = pixels[:, :1]
    frame[top:bottom, right:] = pixels[:, -1:]
    frame[:top] = frame[top : top + 1]
    frame[bottom:] = frame[bottom - 1 : bottom]
    mask = np.full((new_height, new_width), 255, np.uint8)
    mask[top:bottom, left:right] = 0
    rng = np.random.default_rng(seed)
    bands = [(slice(0, top), slice(None)), (slice(bottom, None), slice(None))]
    bands += [(slice(top, bottom), slice(0, left)), (slice(top, bottom), slice(right, None))]
    for rows, columns in bands:
        band = frame[rows, columns]
        if band.size:
            if noise:
                grain = rng.integers(-NOISE, NOISE + 1, (*band.shape[:2], 3), dtype=np.int16)
                grain += band[..., :3]
                band[..., :3] = np.clip(grain, 0, 255, out=grain)
            if band.shape[-1] == 4:
                band[..., 3] = 255  # the new area is opaque
    return frame, mask


def bands(size: tuple[int, int], sides: Sides) -> list[list[int]]:
    """The new area as up to four boxes of the new frame (top and bottom full width, left and right
    beside the photo): what an extension stores, the photo itself being the request's own."""
    new_width, new_height = sides.new_size(size)
    left, top, right, bottom = sides.photo_box(size)
    boxes = [(0, 0, new_width, top), (0, bottom, new_width, new_height), (0, top, left, bottom)]
    boxes.append((right, top, new_width, bottom))
    return [list(box) for box in boxes if box[2] > box[0] and box[3] > box[1]]


def strips(size: tuple[int, int], sides: Sides) -> Iterator[tuple[str, Box]]:
    """(side, box) of each strip to fill, in order: left and right over the photo's rows, then top
    and bottom across the full new width. Each holds the band and up to as much photo beside it."""
    width, height = size
    new_width, new_height = sides.new_size(size)
    left, top, right, bottom = sides.photo_box(size)

    def context(band: int, extent: int) -> int:
        return min(extent, max(band, 64))

    if sides.left:
        yield "left", (0, top, left + context(sides.left, width), bottom)
    if sides.right:
        yield "right", (right - context(sides.right, width), top, new_width, bottom)
    if sides.top:
        yield "top", (0, 0, new_width, top + context(sides.top, height))
    if sides.bottom:
        yield "bottom", (0, bottom - context(sides.bottom, height), new_width, new_height)


def tiles(box: Box, side: str, working_resolution: int, whole_strips: bool = False) -> list[Box]:
    """The strip cut into overlapping tiles, ordered from the photo outwards (see the module doc);
    with `whole_strips` (a native-size remover), the strip itself."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if working_resolution <= 0 or whole_strips:
        return [box]
    largest = (working_resolution * MAX_DOWNSCALE) ** 2
    across_x = side in ("left", "right")  # the strip grows outwards along x
    best = None
    for count_x in range(1, 64):
        for count_y in range(1, 64):
            tile_w, tile_h = _tile_length(width, count_x), _tile_length(height, count_y)
            if max(tile_w / tile_h, tile_h / tile_w) <= MAX_TILE_ASPECT and tile_w * tile_h <= largest:
                if best is None or count_x * count_y < best[0] * best[1]:
                    best = (count_x, count_y)
                break
    count_x, count_y = best or (1, 1)
    xs = _spans(left, right, count_x)
    ys = _spans(top, bottom, count_y)
    if side == "left":
        xs = xs[::-1]
    if side == "top":
        ys = ys[::-1]
    if across_x:  # outwards first along x, then along the edge
        return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]
    return [(x0, y0, x1, y1) for x0, x1 in xs for y0, y1 in ys]


def _overlap(length: int, count: int) -> int:
    return 0 if count == 1 else max(SEAM * 2, length // (count * 8))


def _tile_length(length: int, count: int) -> int:
    return math.ceil((length + (count - 1) * _overlap(length, count)) / count)


def _spans(start: int, end: int, count: int) -> list[tuple[int, int]]:
    length = end - start
    size = min(length, _tile_length(length, count))
    if count == 1:
        return [(start, end)]
    step = (length - size) / (count - 1)
    return [(start + round(i * step), start + round(i * step) + size) for i in range(count)]


def tile_count(size: tuple[int, int], sides: Sides, working_resolution: int, whole_strips: bool = False) -> int:
    return sum(len(tiles(box, side, working_resolution, whole_strips)) for side, box in strips(size, sides))


# -- filling -----------------------------------------------------------------------------------


def fill(
    image: Image.Image,
    sides: Sides,
    *,
    working_resolution: int,
    size_multiple: int,
    paint: Paint,
    prefill: Remover | None,
    seed: int = 0,
    whole_strips: bool = False,
) -> Image.Image:
    """The extended image: `image` byte-identical at its place, the new area filled (steps 1-4).

    `paint` runs the model on one fitted tile; `prefill`, when given, first fills the tile's new
    pixels (for generative models, which alone get the start's noise); `whole_strips`: one tile per
    strip, fitted to `working_resolution` whatever its size (native-size removers)."""
    # Only the part of the new frame the strips cover is built and worked on (with a band on one
    # side of a 12 MP photo that is the band and its context, not the whole frame).
    placed = list(strips(image.size, sides))
    left, top = min(box[0] for _, box in placed), min(box[1] for _, box in placed)
    right, bottom = max(box[2] for _, box in placed), max(box[3] for _, box in placed)
    photo_box = sides.photo_box(image.size)
    inside = (max(left, photo_box[0]), max(top, photo_box[1]), min(right, photo_box[2]), min(bottom, photo_box[3]))
    part = image.crop(
        (inside[0] - photo_box[0], inside[1] - photo_box[1], inside[2] - photo_box[0], inside[3] - photo_box[1])
    )
    around = Sides(left=inside[0] - left, top=inside[1] - top, right=right - inside[2], bottom=bottom - inside[3])
    canvas, new_area = _extended_arrays(part, around, seed, noise=prefill is not None)
    is_new = new_area > 0
    done = np.zeros_like(is_new)
    index = 0
    for side, strip in placed:
        for box in tiles(strip, side, working_resolution, whole_strips):
            x0, y0, x1, y1 = box[0] - left, box[1] - top, box[2] - left, box[3] - top
            todo = is_new[y0:y1, x0:x1] & ~done[y0:y1, x0:x1]
            if not todo.any():
                continue
            weight = _blend_weight(todo, is_new[y0:y1, x0:x1])
            model_mask = Image.fromarray(np.where(weight > 0, 255, 0).astype(np.uint8))
            region = to_model_rgb(Image.fromarray(canvas[y0:y1, x0:x1]))
            fit = plan_fit(region.size, working_resolution, size_multiple)
            fitted, fitted_mask = fit.apply(region), fit.apply(model_mask, is_mask=True)
            if prefill is not None:
                fitted = _prefilled(fitted, fitted_mask, prefill)
            answer = paint(fitted, fitted_mask, index)
            _blend_into(canvas[y0:y1, x0:x1], answer, fit, weight)
            done[y0:y1, x0:x1] |= todo
            index += 1
    # The photo copied into the new frame by a crop beyond its edges (half the cost of a new image and
    # a paste), the strips over it, then the photo's own pixels under the strips again: exactly as came.
    new_width, new_height = sides.new_size(image.size)
    result = image.crop((-photo_box[0], -photo_box[1], new_width - photo_box[0], new_height - photo_box[1]))
    result.paste(Image.fromarray(canvas), (left, top))
    result.paste(part, inside[:2])
    return result


def _blend_weight(todo: np.ndarray, is_new: np.ndarray) -> np.ndarray:
    """Per pixel of the tile, how much of the model's answer to take: 1 over new pixels not filled
    yet, fading over SEAM pixels into earlier tiles' pixels, 0 over the photo."""
    weight = todo.astype(np.float32)
    earlier = is_new & ~todo
    if earlier.any():
        distance = cv2.distanceTransform((~todo).astype(np.uint8), cv2.DIST_L2, 3)
        ramp = np.clip(1.0 - distance / SEAM, 0.0, 1.0)
        weight = np.where(earlier, ramp, weight)
    return weight


def _blend_into(target: np.ndarray, answer: Image.Image, fit: Fit, weight: np.ndarray) -> None:
    """Blend the model's `answer` (at the fitted size) into the tile `target` in place. Only the
    bounding box of a non-zero weight is scaled back (the part over the photo's context is never
    used: with a band on one side that halves the upscale) and only partial weights are blended."""
    rows, columns = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    painted = np.asarray(_restored(answer, fit, (left, top, right, bottom)))
    weight, colour = weight[top:bottom, left:right], target[top:bottom, left:right, :3]
    np.copyto(colour, painted, where=(weight >= 1.0)[..., None])
    partial = (weight > 0) & (weight < 1.0)
    if partial.any():
        share = weight[partial][:, None]
        before = colour[partial].astype(np.float32)
        colour[partial] = np.rint(before + (painted[partial] - before) * share).astype(np.uint8)


def _restored(answer: Image.Image, fit: Fit, box: Box) -> Image.Image:
    """`fit.restore(answer).crop(box)` without scaling the rest of the tile: PIL resamples just the
    box's part of the source (the same filter over the same pixels, to a grey level of rounding)."""
    scaled = answer.convert("RGB").crop((0, 0, *fit.scaled_size))
    left, top, right, bottom = box
    if fit.scaled_size == fit.original_size:
        return scaled.crop(box)
    scale_x = fit.scaled_size[0] / fit.original_size[0]
    scale_y = fit.scaled_size[1] / fit.original_size[1]
    source = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
    return scaled.resize((right - left, bottom - top), Image.Resampling.LANCZOS, box=source)


def _prefilled(image: Image.Image, mask: Image.Image, prefill: Remover) -> Image.Image:
    filled = prefill(image, mask)
    if filled.size != image.size:
        filled = filled.resize(image.size, Image.Resampling.BICUBIC)
    return Image.composite(filled.convert("RGB"), image, mask)


def opencv_prefill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """OpenCV Telea over the mask, at a small size and scaled back (a diffusion model only needs the
    colours to start from; Telea costs ~3 s over a half-masked 512² tile at full size)."""
    scale = min(1.0, PREFILL_SIDE / max(image.size))
    small = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    pixels = np.asarray(image.convert("RGB").resize(small, Image.Resampling.BOX))
    holes = np.asarray(mask.resize(small, Image.Resampling.NEAREST))
    filled = Image.fromarray(cv2.inpaint(pixels, holes, 3, cv2.INPAINT_TELEA))
    return filled.resize(image.size, Image.Resampling.BICUBIC)


__all__ = [
    "ANCHORS",
    "Sides",
    "bands",
    "extended",
    "fill",
    "opencv_prefill",
    "parse_aspect",
    "sides_for_aspect",
    "strips",
    "tile_count",
    "tiles",
]
