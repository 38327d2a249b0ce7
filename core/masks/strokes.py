"""Masks from the mask editor's strokes, rasterised at the photo's full resolution.

The editor (core/ui/mask_canvas.js) keeps what the user paints as a list of strokes in IMAGE pixels:
`{"tool": "brush" | "eraser" | "rect", "size": brush diameter, "points": [[x, y], ...]}` (a rectangle
has two corner points). The tool is a name, never a colour, so nothing here guesses paint from
colour; strokes are applied in order (the eraser removes what was painted before it), exactly as the
editor shows them. Limits are checked before any pixel is drawn.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from core.errors import BadMaskError

TOOLS = ("brush", "eraser", "rect")
MAX_STROKES = 5_000
MAX_POINTS = 200_000  # over all strokes
_MAX_COORDINATE = 1e6


def _malformed(detail: str) -> BadMaskError:
    return BadMaskError(f"the canvas drawing is malformed ({detail}); clear it and paint again")


def _number(value: object, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _malformed(f"{what} is not a number")
    if not low <= value <= high:
        raise _malformed(f"{what} {value} is out of range")
    return float(value)


def _checked(strokes: object, size: tuple[int, int]) -> list[tuple[str, float, list[tuple[float, float]]]]:
    if not isinstance(strokes, list):
        raise _malformed("not a list of strokes")
    if len(strokes) > MAX_STROKES:
        raise BadMaskError(f"too many strokes ({len(strokes)}, at most {MAX_STROKES}): clear the mask and paint again")
    checked, total = [], 0
    max_size = 4 * max(size)
    for stroke in strokes:
        if not isinstance(stroke, dict):
            raise _malformed("a stroke is not an object")
        tool, points = stroke.get("tool"), stroke.get("points")
        if tool not in TOOLS:
            raise _malformed(f"unknown tool {str(tool)[:20]!r}")
        if not isinstance(points, list) or not points or (tool == "rect" and len(points) != 2):
            raise _malformed("a stroke has no points")
        total += len(points)
        if total > MAX_POINTS:
            raise BadMaskError(
                f"the strokes have too many points (at most {MAX_POINTS}): clear the mask and paint again"
            )
        width = 0.0 if tool == "rect" else _number(stroke.get("size"), "brush size", 1, max_size)
        xy = []
        for point in points:
            if not isinstance(point, list | tuple) or len(point) != 2:
                raise _malformed("a point is not [x, y]")
            xy.append(tuple(_number(value, "a coordinate", -_MAX_COORDINATE, _MAX_COORDINATE) for value in point))
        checked.append((tool, width, xy))
    return checked


def mask_from_strokes(strokes: object, size: tuple[int, int]) -> Image.Image:
    """The strokes -> "L" 0/255 of `size` (255 = repaint). Raises BadMaskError for malformed strokes."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for tool, width, points in _checked(strokes, size):
        value = 0 if tool == "eraser" else 255
        if tool == "rect":
            (x0, y0), (x1, y1) = points
            # Pixel (i, j) covers [i, i+1): it is painted when its centre lies inside the rectangle.
            box = (round(min(x0, x1)), round(min(y0, y1)), round(max(x0, x1)) - 1, round(max(y0, y1)) - 1)
            if box[2] >= box[0] and box[3] >= box[1]:
                draw.rectangle(box, fill=value)
            continue
        radius = width / 2
        # Round caps and joins, as the editor's canvas draws them (lineCap/lineJoin "round"); pixel
        # centres are at +0.5, PIL's integer coordinates at the pixel's corner.
        centres = [(x - 0.5, y - 0.5) for x, y in points]
        if len(centres) > 1:
            draw.line(centres, fill=value, width=max(1, round(width)), joint="curve")
        for x, y in (centres[0], centres[-1]) if len(centres) > 1 else centres:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=value)
    return mask


__all__ = ["MAX_POINTS", "MAX_STROKES", "TOOLS", "mask_from_strokes"]
