"""The comparison grid (A1111's X/Y plot): one request varied along up to two axes.

1. An `Axis` is a kind (model, seed, steps, guidance, strength, scheduler, or prompt search/replace)
   and its values, parsed from what a user types: `20, 30, 40`, a range `20-40 (+10)`, or for
   Prompt S/R the words to swap in (the first is the word searched for in the prompt).
2. `build_grid` makes one `RequestItem` per cell (named `y<row>-x<column>`), and `Grid.run_order`
   sorts them so each model loads once; the queue serves cells already in the store at once.
3. `grid_image` draws the labelled grid as one picture; `mask_change` measures, for inpainting,
   how much a result changed inside the mask and whether any pixel changed outside it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core import masks
from core.batch import RequestItem, model_order
from core.errors import BadParameterError
from core.requests import SCHEDULERS, InpaintRequest
from core.runner import Request

MAX_VALUES = 12  # per axis
MAX_CELLS = 64
LABEL_COLOUR, MISSING_COLOUR, BACKGROUND = (20, 20, 20), (200, 200, 200), (255, 255, 255)

# kind -> (label, request field, value type)
AXES: dict[str, tuple[str, str, type]] = {
    "model": ("Model", "model", str),
    "seed": ("Seed", "seed", int),
    "steps": ("Steps", "num_inference_steps", int),
    "guidance": ("Guidance", "guidance_scale", float),
    "strength": ("Strength", "strength", float),
    "scheduler": ("Scheduler", "scheduler", str),
    "prompt_sr": ("Prompt S/R", "prompt", str),
}
_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*-\s*(-?[\d.]+)\s*(?:\(\s*\+\s*([\d.]+)\s*\))?\s*$")


@dataclass(frozen=True)
class Axis:
    kind: str
    values: tuple[Any, ...]

    @property
    def label(self) -> str:
        return AXES[self.kind][0]

    def value_label(self, value: Any) -> str:
        if self.kind == "prompt_sr":
            return str(value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    def apply(self, request: Request, value: Any) -> Request:
        """`request` with this axis at `value` (Prompt S/R replaces the first value in both prompts)."""
        if self.kind == "prompt_sr":
            search = self.values[0]
            return dataclasses.replace(
                request,
                prompt=request.prompt.replace(search, value),
                negative_prompt=request.negative_prompt.replace(search, value),
            )
        return dataclasses.replace(request, **{AXES[self.kind][1]: value})


def parse_axis(kind: str, text: str | Sequence[Any]) -> Axis:
    """An axis from typed text (`5, 7.5`, `20-40 (+10)`) or a list of values (models, schedulers).

    Raises BadParameterError naming the value that does not parse."""
    if kind not in AXES:
        raise BadParameterError(f"unknown axis {kind!r}; choose one of {', '.join(AXES)}")
    label, _, value_type = AXES[kind]
    parts = [part.strip() for part in text.split(",")] if isinstance(text, str) else [str(v).strip() for v in text]
    values: list[Any] = []
    for part in parts:
        if not part:
            continue
        if value_type is str:
            values.append(part)
            continue
        values.extend(_numbers(label, part, value_type))
    if kind == "scheduler":
        for value in values:
            if value not in SCHEDULERS:
                raise BadParameterError(f"{label}: {value!r} is not a scheduler; use {', '.join(SCHEDULERS)}")
    if not values:
        raise BadParameterError(f"{label}: give at least one value")
    if len(values) > MAX_VALUES:
        raise BadParameterError(f"{label}: {len(values)} values; the limit is {MAX_VALUES} per axis")
    if len(set(values)) != len(values):
        raise BadParameterError(f"{label}: a value is listed twice")
    return Axis(kind, tuple(values))


def _numbers(label: str, part: str, value_type: type) -> list[Any]:
    match = _RANGE.match(part)
    try:
        if match is None:
            return [value_type(part)]
        start, stop = value_type(match[1]), value_type(match[2])
        step = value_type(match[3]) if match[3] else value_type(1)
    except ValueError:
        raise BadParameterError(
            f"{label}: {part!r} is not a {'whole number' if value_type is int else 'number'}"
        ) from None
    if step <= 0 or stop < start:
        raise BadParameterError(f"{label}: {part!r} is not an increasing range")
    count = int((stop - start) / step + 1e-9) + 1
    if count > MAX_VALUES:
        raise BadParameterError(f"{label}: {part!r} gives {count} values; the limit is {MAX_VALUES} per axis")
    return [value_type(round(start + index * step, 6)) for index in range(count)]


@dataclass(frozen=True)
class Grid:
    x: Axis
    y: Axis | None
    items: tuple[RequestItem, ...]  # row by row: y0-x0, y0-x1, ..., y1-x0, ...

    @property
    def columns(self) -> int:
        return len(self.x.values)

    @property
    def rows(self) -> int:
        return 1 if self.y is None else len(self.y.values)

    def cell(self, row: int, column: int) -> RequestItem:
        return self.items[row * self.columns + column]

    def run_order(self) -> list[RequestItem]:
        return model_order(self.items)


def build_grid(base: Request, x: Axis, y: Axis | None = None) -> Grid:
    """One item per cell; checks the axes make sense for `base` before anything runs."""
    if y is not None and y.kind == x.kind:
        raise BadParameterError("the two axes must vary different settings")
    for axis in (x, y):
        if axis is None:
            continue
        if axis.kind == "strength" and not isinstance(base, InpaintRequest):
            raise BadParameterError("strength only applies to inpainting")
        if axis.kind == "prompt_sr" and axis.values[0] not in base.prompt + base.negative_prompt:
            raise BadParameterError(f"Prompt S/R: {axis.values[0]!r} is not in the prompt")
    rows = (None,) if y is None else y.values
    if len(rows) * len(x.values) > MAX_CELLS:
        raise BadParameterError(f"{len(rows)} x {len(x.values)} cells; the limit is {MAX_CELLS}")
    items = []
    for row, y_value in enumerate(rows):
        for column, x_value in enumerate(x.values):
            request = x.apply(base, x_value)
            if y is not None:
                request = y.apply(request, y_value)
            items.append(RequestItem(f"y{row}-x{column}", request))
    return Grid(x, y, tuple(items))


# -- the picture -----------------------------------------------------------------------------------


def grid_image(grid: Grid, images: Mapping[str, Image.Image | None], *, cell_side: int = 512) -> Image.Image:
    """The grid as one labelled RGB picture: column labels on top, row labels on the left, each cell
    scaled to fit `cell_side` (the first image's aspect); a missing cell is grey."""
    first = next((image for image in images.values() if image is not None), None)
    aspect = first.width / first.height if first is not None else 1.0
    width, height = (
        (cell_side, max(1, round(cell_side / aspect))) if aspect >= 1 else (round(cell_side * aspect), cell_side)
    )
    font = _font(max(14, cell_side // 22))
    line = font.size + 8 if hasattr(font, "size") else 22
    column_labels = [grid.x.value_label(value) for value in grid.x.values]
    row_labels = [] if grid.y is None else [grid.y.value_label(value) for value in grid.y.values]
    top = 2 * line  # the x axis's name and its values
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = (
        0
        if grid.y is None
        else min(cell_side, 16 + max(measure.textlength(text, font=font) for text in [grid.y.label, *row_labels]))
    )
    left = int(left)
    canvas = Image.new("RGB", (left + grid.columns * width, top + grid.rows * height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((left + 4, 2), grid.x.label, fill=LABEL_COLOUR, font=font)
    if grid.y is not None:
        draw.text((4, 2), grid.y.label, fill=LABEL_COLOUR, font=font)
    for column, text in enumerate(column_labels):
        draw.text(
            (left + column * width + 4, line + 2), _fit(draw, text, font, width - 8), fill=LABEL_COLOUR, font=font
        )
    for row in range(grid.rows):
        if grid.y is not None:
            text = _fit(draw, row_labels[row], font, left - 8)
            draw.text((4, top + row * height + height // 2 - line // 2), text, fill=LABEL_COLOUR, font=font)
        for column in range(grid.columns):
            box = (left + column * width, top + row * height)
            image = images.get(grid.cell(row, column).name)
            if image is None:
                draw.rectangle((*box, box[0] + width - 1, box[1] + height - 1), fill=MISSING_COLOUR, outline=BACKGROUND)
                draw.text((box[0] + 8, box[1] + 8), "no result", fill=LABEL_COLOUR, font=font)
                continue
            canvas.paste(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS), box)
    return canvas


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


# -- inpainting: what changed where ------------------------------------------------------------------


@dataclass(frozen=True)
class MaskChange:
    mean_inside: float  # mean absolute change per channel inside the feathered mask, 0..255
    changed_inside: float  # fraction of the mask's pixels that changed at all
    changed_outside: int  # pixels changed outside the feathered mask: 0 is the promise

    @property
    def outside_untouched(self) -> bool:
        return self.changed_outside == 0


def mask_change(request: InpaintRequest, result: Image.Image) -> MaskChange:
    """How `result` differs from `request.image`, inside and outside the mask the composite used."""
    _, feathered = masks.prepare(
        request.mask, invert_mask=request.invert_mask, mask_grow=request.mask_grow, mask_blur=request.mask_blur
    )
    before = np.asarray(request.image.convert("RGB"), dtype=np.int16)
    after = np.asarray(result.convert("RGB"), dtype=np.int16)
    if before.shape != after.shape:
        raise BadParameterError("the result and the image differ in size")
    difference = np.abs(after - before)
    changed = difference.max(axis=2) > 0
    inside = np.asarray(feathered) > 0
    count = int(inside.sum())
    return MaskChange(
        mean_inside=float(difference[inside].mean()) if count else 0.0,
        changed_inside=float(changed[inside].sum() / count) if count else 0.0,
        changed_outside=int(changed[~inside].sum()),
    )


__all__ = ["AXES", "Axis", "Grid", "MaskChange", "build_grid", "grid_image", "mask_change", "parse_axis"]
