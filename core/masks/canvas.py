"""Masks from the drawable canvas: Fabric.js objects rasterised at the image's full resolution, within budgets
that a forged drawing cannot exceed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from core.errors import BadMaskError
from core.masks.files import same_aspect

_MAX_OBJECTS = 10_000
_MAX_CANVAS_SIDE = 16_384
_MAX_COORDINATE = 1e6  # canvas units; anything beyond is forged, not drawn
_MAX_POINTS = 1_000_000  # flattened vertices over the whole drawing
_MAX_PAINT_WORK = 4e9  # estimated pixel writes over the whole drawing
_MAX_CROSSINGS = 50_000_000  # edge/row crossings filled over the whole drawing


def mask_from_canvas(
    json_data: dict | None,
    image_size: tuple[int, int],
    *,
    canvas_size: tuple[int, int],
    background_fit: dict | None = None,
    image_data: np.ndarray | None = None,
    is_eraser: Callable[[dict], bool] = lambda obj: False,
) -> Image.Image:
    """The canvas drawing -> "L" 0/255 at the image's full resolution.

    `json_data` is Fabric.js `canvas.toObject()` output (streamlit-drawable-canvas `json_data`). Its vector objects
    are rasterised directly at full resolution, in order; objects for which `is_eraser(obj)` is true (or that Fabric
    composites with "destination-out") remove from the mask. Only geometry and transparency decide coverage, never
    colour. When there are no objects, `image_data` (the canvas's RGBA pixels) is used instead: alpha > 0 is paint.

    Canvas pixels map to image pixels through `background_fit` (the component's `{natural_width, natural_height,
    scale_x, scale_y, offset_x, offset_y}`) when given: x_image = (x_canvas - offset_x) / scale_x, rescaled from the
    background's natural size to `image_size` if the app showed a smaller preview. Without it the canvas is
    stretched over the image, each axis on its own.
    """
    width, height = _checked_size(image_size, "image size")
    canvas_width, canvas_height = _checked_size(canvas_size, "canvas size")
    if max(canvas_width, canvas_height) > _MAX_CANVAS_SIDE:
        raise BadMaskError(_malformed("the canvas is too large"))
    canvas_to_image = _canvas_to_image(background_fit, (width, height), (canvas_width, canvas_height))
    objects = _objects(json_data)
    if not objects and image_data is not None:
        return _mask_from_canvas_pixels(image_data, (width, height), (canvas_width, canvas_height), canvas_to_image)
    mask = np.zeros((height, width), np.uint8)
    budget = _Budget()
    for obj in objects:
        shape = _shape(obj, canvas_to_image, budget)
        if shape is not None:
            erases = is_eraser(obj) or obj.get("globalCompositeOperation") == "destination-out"
            _paint(mask, shape, 0 if erases else 255, budget)
    return Image.fromarray(mask)


def _checked_size(size: object, what: str) -> tuple[int, int]:
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(side, int) and not isinstance(side, bool) and side >= 1 for side in size)
    ):
        raise BadMaskError(_malformed(f"the {what} is not two positive whole numbers"))
    return int(size[0]), int(size[1])


def _malformed(detail: str) -> str:
    return f"the canvas drawing is malformed ({detail}); clear it and draw the mask again"


def _objects(json_data: object) -> list[dict]:
    if json_data is None:
        return []
    if not isinstance(json_data, dict):
        raise BadMaskError(_malformed("the drawing is not a JSON object"))
    objects = json_data.get("objects", [])
    if objects is None:
        return []
    if not isinstance(objects, list):
        raise BadMaskError(_malformed("its objects are not a list"))
    if len(objects) > _MAX_OBJECTS:
        raise BadMaskError(_malformed(f"more than {_MAX_OBJECTS} objects"))
    if not all(isinstance(obj, dict) for obj in objects):
        raise BadMaskError(_malformed("an object is not a JSON object"))
    return objects


def _finite(value: object, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadMaskError(_malformed(f"{what} is not a number"))
    if not math.isfinite(value) or not low <= value <= high:
        raise BadMaskError(_malformed(f"{what} is out of range"))
    return float(value)


def _number(obj: dict, key: str, default: float, low: float = -_MAX_COORDINATE, high: float = _MAX_COORDINATE) -> float:
    value = obj.get(key)
    return default if value is None else _finite(value, key, low, high)


def _canvas_to_image(fit: dict | None, image_size: tuple[int, int], canvas_size: tuple[int, int]) -> np.ndarray:
    """The 3x3 affine map from canvas coordinates to image coordinates (continuous, pixel i spans [i, i+1))."""
    width, height = image_size
    if fit is None:
        return np.array([[width / canvas_size[0], 0, 0], [0, height / canvas_size[1], 0], [0, 0, 1]])
    if not isinstance(fit, dict):
        raise BadMaskError(_malformed("background_fit is not a JSON object"))
    try:
        natural = [_finite(fit[key], key, 1, 1e6) for key in ("natural_width", "natural_height")]
        scale = [_finite(fit[key], key, 1e-6, 1e6) for key in ("scale_x", "scale_y")]
        offset = [_finite(fit[key], key, -1e6, 1e6) for key in ("offset_x", "offset_y")]
    except KeyError as missing:
        raise BadMaskError(_malformed(f"background_fit has no {missing.args[0]}")) from None
    # The app may show a downscaled preview on the canvas; its natural size then differs from the image's.
    to_image_x, to_image_y = width / natural[0], height / natural[1]
    if not same_aspect((natural[0], natural[1]), (width, height)):
        raise BadMaskError(
            f"the canvas shows a {natural[0]:.0f}x{natural[1]:.0f} background but the image is {width}x{height}; "
            "they must have the same aspect ratio"
        )
    a, b = to_image_x / scale[0], to_image_y / scale[1]
    return np.array([[a, 0, -offset[0] * a], [0, b, -offset[1] * b], [0, 0, 1]])


def _mask_from_canvas_pixels(
    pixels: object, image_size: tuple[int, int], canvas_size: tuple[int, int], canvas_to_image: np.ndarray
) -> Image.Image:
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.shape != (canvas_size[1], canvas_size[0], 4)
    ):
        raise BadMaskError(
            _malformed(f"the canvas pixels are not a {canvas_size[0]}x{canvas_size[1]} RGBA 8-bit image")
        )
    painted = np.where(pixels[:, :, 3] > 0, np.uint8(255), np.uint8(0))
    # Sample each image pixel's centre in the canvas: the inverse map, in OpenCV's pixel-centre coordinates.
    image_to_canvas = np.linalg.inv(canvas_to_image)
    (a, _, ox), (_, b, oy) = image_to_canvas[:2]
    sample = np.array([[a, 0, 0.5 * a + ox - 0.5], [0, b, 0.5 * b + oy - 0.5]])
    mask = cv2.warpAffine(
        painted,
        sample,
        image_size,
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return Image.fromarray(mask)


# Fabric.js geometry (the canvas component bundles Fabric 7.4). What is implemented, as Fabric renders it:
#  - An object's own matrix maps its local coordinates to the canvas: translate(centre) . rotate(angle) .
#    scale(scaleX * (flipX ? -1 : 1), scaleY * (flipY ? -1 : 1)) . skewX . skewY.
#  - The centre comes from (left, top) and the origin (originX/originY: left/top -0.5, center 0, right/bottom 0.5,
#    or a number n meaning n - 0.5): centre = (left, top) - origin * size, rotated by `angle` about (left, top),
#    where size is the object's transformed size, stroke included: ((width + strokeWidth) * scaleX, ...), or
#    (width * scaleX + strokeWidth, ...) with strokeUniform; with skew, the bounding box of the skewed box.
#  - Paths and polylines are drawn in local coordinates relative to their pathOffset, the centre of the bounding
#    box of their geometry, which Fabric recomputes from the path/points on load (so it is computed here, never
#    read from the JSON). Path bounds follow Fabric's own formula, including its treatment of a quadratic segment
#    as the cubic with both control points at the quadratic's control point.
#  - Rect, Circle, Ellipse and Triangle are centred on the local origin; Line draws between its x1..y2, which are
#    local coordinates.
#  - The stroke is `strokeWidth` wide in local coordinates (so it scales with the object and with the canvas ->
#    image map) or, with strokeUniform, in canvas coordinates; caps and joins as strokeLineCap/strokeLineJoin.
#  - Fill and stroke both count as coverage unless absent or fully transparent; dashes and shadows are ignored
#    (a dashed stroke covers its whole length: masks err towards covering what the user drew).
#  - Unknown types (text, images, groups) draw nothing.


_ORIGINS = {"left": -0.5, "top": -0.5, "center": 0.0, "right": 0.5, "bottom": 0.5}
_KINDS = {"path", "rect", "labeledrect", "circle", "ellipse", "triangle", "line", "polygon", "polyline"}
_NO_PAINT = {"", "none", "transparent"}


@dataclass
class _Shape:
    fill: list[np.ndarray]  # closed contours in image coordinates
    strokes: list[tuple[np.ndarray, bool]]  # (points, closed) in pen coordinates
    pen_to_image: np.ndarray  # 3x3; the pen is a circle of radius `half_width` in pen coordinates
    half_width: float
    cap: str
    join: str
    miter_limit: float


class _Budget:
    """Bounds the work a drawing may ask for, so forged JSON cannot stall the app."""

    def __init__(self):
        self.points = 0
        self.paint = 0.0
        self.crossings = 0

    def add_points(self, count: int) -> None:
        self.points += count
        if self.points > _MAX_POINTS:
            raise BadMaskError(_malformed("the drawing is too complex"))

    def add_crossings(self, count: int) -> None:
        self.crossings += count
        if self.crossings > _MAX_CROSSINGS:
            raise BadMaskError(_malformed("the drawing is too complex"))

    def add_paint(self, pixel_writes: float) -> None:
        self.paint += pixel_writes
        if self.paint > _MAX_PAINT_WORK:
            raise BadMaskError(_malformed("the drawing is too complex"))


def _is_paint(colour: object) -> bool:
    """Whether a Fabric fill/stroke value puts anything on the canvas: present and not fully transparent."""
    if colour is None or colour is False:
        return False
    if isinstance(colour, dict):
        return True  # gradient or pattern
    if not isinstance(colour, str):
        raise BadMaskError(_malformed("a colour is not a string"))
    text = colour.strip().lower().replace(" ", "")
    if text in _NO_PAINT:
        return False
    if text.startswith(("rgba(", "hsla(")) and text.endswith(")"):
        alpha = text[5:-1].split(",")[-1]
        try:
            return (float(alpha[:-1]) / 100 if alpha.endswith("%") else float(alpha)) > 0
        except ValueError:
            return True
    if text.startswith("#") and len(text) in (5, 9):  # #rgba, #rrggbbaa
        return text[-1] != "0" or (len(text) == 9 and text[-2] != "0")
    return True


def _shape(obj: dict, canvas_to_image: np.ndarray, budget: _Budget) -> _Shape | None:
    kind = str(obj.get("type", "")).lower()
    if kind not in _KINDS or obj.get("visible", True) is False:
        return None
    if _number(obj, "opacity", 1.0, 0.0, 1e6) <= 0:
        return None
    stroke_width = _number(obj, "strokeWidth", 1.0, 0.0, 1e5)
    has_stroke = stroke_width > 0 and _is_paint(obj.get("stroke"))
    has_fill = kind != "line" and _is_paint(obj.get("fill", "rgb(0,0,0)"))
    if not (has_stroke or has_fill):
        return None
    geometry = _Geometry.of(kind, obj)
    local_to_canvas = _object_matrix(obj, geometry, stroke_width)
    local_to_image = canvas_to_image @ local_to_canvas
    if abs(np.linalg.det(local_to_image[:2, :2])) < 1e-12:
        return None  # scaled to nothing
    outlines = geometry.outlines(_spectral_norm(local_to_image))
    budget.add_points(sum(len(points) for points, _ in outlines))
    fill = [_apply(local_to_image, points) for points, _ in outlines if len(points) >= 3] if has_fill else []
    strokes: list[tuple[np.ndarray, bool]] = []
    pen_to_image = local_to_image
    if has_stroke:
        strokes = outlines
        if obj.get("strokeUniform") is True:  # the pen keeps its width on the canvas whatever the object's scale
            strokes = [(_apply(local_to_canvas, points), closed) for points, closed in outlines]
            pen_to_image = canvas_to_image
    return _Shape(
        fill=fill,
        strokes=strokes,
        pen_to_image=pen_to_image,
        half_width=stroke_width / 2,
        cap=str(obj.get("strokeLineCap") or "butt"),
        join=str(obj.get("strokeLineJoin") or "miter"),
        miter_limit=_number(obj, "strokeMiterLimit", 4.0, 0.0, 1e6),
    )


@dataclass
class _Geometry:
    """An object's shape in its local coordinates, and the size Fabric positions it by."""

    width: float
    height: float
    sampler: Callable[[float], list[tuple[np.ndarray, bool]]]
    stroke_in_size: bool = True  # whether Fabric adds the stroke width to width/height when positioning

    def outlines(self, image_pixels_per_unit: float) -> list[tuple[np.ndarray, bool]]:
        """(points, closed) contours, curves sampled finely enough for the given image scale."""
        return self.sampler(image_pixels_per_unit)

    @classmethod
    def of(cls, kind: str, obj: dict) -> _Geometry:
        if kind == "path":
            commands = _simplified_path(obj.get("path"))
            left, top, width, height = _fabric_path_bounds(commands)
            offset = np.array([left + width / 2, top + height / 2])
            return cls(width, height, lambda scale: _flatten(commands, offset, scale))
        if kind in ("polygon", "polyline"):
            points = _points(obj.get("points"))
            low, high = (points.min(axis=0), points.max(axis=0)) if len(points) else (np.zeros(2), np.zeros(2))
            local = points - (low + high) / 2
            closed = kind == "polygon"
            outlines = [(local, closed)] if len(local) else []
            if obj.get("exactBoundingBox") is True:  # Fabric's width/height then already include the stroke
                width, height = _number(obj, "width", 0.0, 0.0), _number(obj, "height", 0.0, 0.0)
                return cls(width, height, lambda scale: outlines, stroke_in_size=False)
            return cls(float(high[0] - low[0]), float(high[1] - low[1]), lambda scale: outlines)
        if kind == "line":
            x1, y1, x2, y2 = (_number(obj, key, 0.0) for key in ("x1", "y1", "x2", "y2"))
            width, height = abs(x2 - x1), abs(y2 - y1)
            # Fabric's Line.calcLinePoints: the segment spans its box, centred on the local origin.
            sign_x, sign_y = (-0.5 if x1 <= x2 else 0.5), (-0.5 if y1 <= y2 else 0.5)
            ends = np.array([[sign_x * width, sign_y * height], [-sign_x * width, -sign_y * height]])
            return cls(width, height, lambda scale: [(ends, False)])
        if kind == "circle":
            radius = _number(obj, "radius", 0.0, 0.0)
            start, end = _number(obj, "startAngle", 0.0), _number(obj, "endAngle", 360.0)
            clockwise = obj.get("counterClockwise") is not True
            return cls(2 * radius, 2 * radius, lambda scale: [_arc(radius, radius, start, end, clockwise, scale)])
        if kind == "ellipse":
            rx, ry = _number(obj, "rx", 0.0, 0.0), _number(obj, "ry", 0.0, 0.0)
            return cls(2 * rx, 2 * ry, lambda scale: [_arc(rx, ry, 0.0, 360.0, True, scale)])
        width, height = _number(obj, "width", 0.0, 0.0), _number(obj, "height", 0.0, 0.0)
        if kind == "triangle":
            corners = np.array([[-width / 2, height / 2], [0, -height / 2], [width / 2, height / 2]])
            return cls(width, height, lambda scale: [(corners, True)])
        rx, ry = min(_number(obj, "rx", 0.0, 0.0), width / 2), min(_number(obj, "ry", 0.0, 0.0), height / 2)
        return cls(width, height, lambda scale: [(_rect_outline(width, height, rx, ry, scale), True)])


def _object_matrix(obj: dict, geometry: _Geometry, stroke_width: float) -> np.ndarray:
    """Fabric's calcOwnMatrix: local coordinates -> canvas coordinates (see the notes above)."""
    scale_x, scale_y = _number(obj, "scaleX", 1.0, -1e4, 1e4), _number(obj, "scaleY", 1.0, -1e4, 1e4)
    flip_x = (obj.get("flipX") is True) != (scale_x < 0)  # Fabric turns a negative scale into a flip
    flip_y = (obj.get("flipY") is True) != (scale_y < 0)
    scale_x, scale_y = abs(scale_x), abs(scale_y)
    skew_x, skew_y = _number(obj, "skewX", 0.0, -89.0, 89.0), _number(obj, "skewY", 0.0, -89.0, 89.0)
    angle = math.radians(_number(obj, "angle", 0.0))
    left, top = _number(obj, "left", 0.0), _number(obj, "top", 0.0)
    origin_x, origin_y = _origin(obj.get("originX", "center")), _origin(obj.get("originY", "center"))

    linear = np.diag([-scale_x if flip_x else scale_x, -scale_y if flip_y else scale_y])
    linear = linear @ np.array([[1, math.tan(math.radians(skew_x))], [0, 1]])
    linear = linear @ np.array([[1, 0], [math.tan(math.radians(skew_y)), 1]])

    # The size Fabric positions the object by (its _getTransformedDimensions).
    uniform = obj.get("strokeUniform") is True
    inner_stroke = stroke_width if geometry.stroke_in_size and not uniform else 0.0
    width, height = geometry.width + inner_stroke, geometry.height + inner_stroke
    if skew_x or skew_y:
        corners = np.array([[-width, -height], [width, -height], [-width, height], [width, height]]) / 2 @ linear.T
        size = corners.max(axis=0) - corners.min(axis=0)
    else:
        size = np.array([width * scale_x, height * scale_y])
    if uniform and geometry.stroke_in_size:
        size = size + stroke_width

    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    anchor = np.array([left, top])
    centre = anchor + rotation @ (-np.array([origin_x, origin_y]) * size)
    matrix = np.eye(3)
    matrix[:2, :2] = rotation @ linear
    matrix[:2, 2] = centre
    return matrix


def _origin(value: object) -> float:
    if isinstance(value, str) and value in _ORIGINS:
        return _ORIGINS[value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite(value, "origin", -1e3, 1e3) - 0.5
    raise BadMaskError(_malformed("an object has an unknown origin"))


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _spectral_norm(matrix: np.ndarray) -> float:
    return float(np.linalg.norm(matrix[:2, :2], 2))


def _points(raw: object) -> np.ndarray:
    if not isinstance(raw, list):
        raise BadMaskError(_malformed("a polygon's points are not a list"))
    if len(raw) > _MAX_POINTS:
        raise BadMaskError(_malformed("the drawing is too complex"))
    try:
        pairs = [(point["x"], point["y"]) for point in raw]
    except (TypeError, KeyError):
        raise BadMaskError(_malformed("a polygon point is not {x, y}")) from None
    return np.array(
        [
            [_finite(x, "x", -_MAX_COORDINATE, _MAX_COORDINATE), _finite(y, "y", -_MAX_COORDINATE, _MAX_COORDINATE)]
            for x, y in pairs
        ],
        dtype=np.float64,
    ).reshape(-1, 2)


# --- SVG path commands (Fabric stores paths as [["M", x, y], ["Q", x1, y1, x, y], ...]) -------------------------


_ARITY = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}


def _simplified_path(raw: object) -> list[tuple]:
    """Any SVG path command list -> absolute M, L, Q, C and Z only (what Fabric itself keeps after loading).

    Arcs ("A", which Fabric never stores) become a straight line to their end point.
    """
    if not isinstance(raw, list):
        raise BadMaskError(_malformed("a path is not a list of commands"))
    if len(raw) > _MAX_POINTS:
        raise BadMaskError(_malformed("the drawing is too complex"))
    simple: list[tuple] = []
    x = y = start_x = start_y = 0.0
    last_cubic = last_quad = None  # the previous segment's last control point, for S and T
    for command in raw:
        if not isinstance(command, list | tuple) or not command or not isinstance(command[0], str):
            raise BadMaskError(_malformed("a path command is not [letter, numbers...]"))
        letter = command[0]
        upper = letter.upper()
        if upper not in _ARITY:
            raise BadMaskError(_malformed(f"unknown path command {letter[:3]!r}"))
        args = [_finite(value, "a path coordinate", -_MAX_COORDINATE, _MAX_COORDINATE) for value in command[1:]]
        arity = _ARITY[upper]
        if upper == "Z":
            simple.append(("Z",))
            x, y = start_x, start_y
            last_cubic = last_quad = None
            continue
        if not args or len(args) % arity:
            raise BadMaskError(_malformed(f"path command {upper} has {len(args)} numbers"))
        relative = letter != upper
        for group_index in range(0, len(args), arity):
            values = args[group_index : group_index + arity]
            base_x, base_y = (x, y) if relative else (0.0, 0.0)
            # Coordinates in values alternate x, y except for H (x only) and V (y only); arcs end on their last two.
            if upper == "H":
                values = [values[0] + base_x, y]
            elif upper == "V":
                values = [x, values[0] + base_y]
            elif upper == "A":
                values = [values[5] + base_x, values[6] + base_y]
            else:
                values = [value + (base_x if index % 2 == 0 else base_y) for index, value in enumerate(values)]
            step = "L" if (upper == "M" and group_index > 0) or upper in ("H", "V", "A") else upper
            if step == "S":
                control = (2 * x - last_cubic[0], 2 * y - last_cubic[1]) if last_cubic else (x, y)
                step, values = "C", [*control, *values]
            elif step == "T":
                control = (2 * x - last_quad[0], 2 * y - last_quad[1]) if last_quad else (x, y)
                step, values = "Q", [*control, *values]
            simple.append((step, *values))
            last_cubic = (values[2], values[3]) if step == "C" else None
            last_quad = (values[0], values[1]) if step == "Q" else None
            x, y = values[-2], values[-1]
            if step == "M":
                start_x, start_y = x, y
    return simple


def _fabric_path_bounds(commands: list[tuple]) -> tuple[float, float, float, float]:
    """Fabric's Path._calcBoundsFromPath: (left, top, width, height) of the path, stroke excluded."""
    points: list[tuple[float, float]] = []
    x = y = start_x = start_y = 0.0
    for step, *values in commands:
        if step == "M":
            x, y = start_x, start_y = values
        elif step == "L":
            points += [(start_x, start_y), (values[0], values[1])]  # Fabric adds the subpath start, not (x, y)
            x, y = values
        elif step == "C":
            points += _cubic_extremes((x, y), values[0:2], values[2:4], values[4:6])
            x, y = values[4:6]
        elif step == "Q":
            points += _cubic_extremes((x, y), values[0:2], values[0:2], values[2:4])  # as Fabric measures it
            x, y = values[2:4]
        else:
            x, y = start_x, start_y
    if not points:
        return 0.0, 0.0, 0.0, 0.0
    array = np.array(points)
    low, high = array.min(axis=0), array.max(axis=0)
    return float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])


def _cubic_extremes(p0, p1, p2, p3) -> list[tuple[float, float]]:
    """The end points of a cubic Bezier and its points where dx/dt or dy/dt is zero."""
    found = [tuple(p0), tuple(p3)]
    for axis in (0, 1):
        a0, a1, a2, a3 = p0[axis], p1[axis], p2[axis], p3[axis]
        # derivative / 3 = a t^2 + b t + c
        a, b, c = -a0 + 3 * a1 - 3 * a2 + a3, 2 * (a0 - 2 * a1 + a2), a1 - a0
        if abs(a) < 1e-12:
            roots = [-c / b] if abs(b) > 1e-12 else []
        else:
            discriminant = b * b - 4 * a * c
            roots = [] if discriminant < 0 else [(-b + s * math.sqrt(discriminant)) / (2 * a) for s in (1, -1)]
        for t in roots:
            if 0 < t < 1:
                found.append(tuple(_bezier(np.array([p0, p1, p2, p3], float), np.array([t]))[0]))
    return found


def _bezier(controls: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points of a quadratic (3 controls) or cubic (4 controls) Bezier at parameters t."""
    t = t[:, None]
    u = 1 - t
    if len(controls) == 3:
        return u * u * controls[0] + 2 * u * t * controls[1] + t * t * controls[2]
    return u**3 * controls[0] + 3 * u * u * t * controls[1] + 3 * u * t * t * controls[2] + t**3 * controls[3]


def _flatten(commands: list[tuple], offset: np.ndarray, scale: float) -> list[tuple[np.ndarray, bool]]:
    """Subpaths as polylines, relative to `offset`, curves split finely enough for `scale` image pixels per unit."""
    contours: list[tuple[np.ndarray, bool]] = []
    current: list[np.ndarray] = []
    position = start = np.zeros(2)
    for step, *values in commands:
        if step == "M":
            if len(current) > 1:
                contours.append((np.array(current), False))
            position = start = np.array(values, float)
            current = [position]
            continue
        if step == "Z":
            if len(current) > 1:
                contours.append((np.array(current), True))
            position = start
            current = [start]
            continue
        if not current:
            current = [position]
        if step == "L":
            position = np.array(values, float)
            current.append(position)
            continue
        controls = np.array([position, *np.reshape(values, (-1, 2))], float)
        # A chord of a Bezier strays from it by at most |second difference| / (4 n^2) (3/4 of that for cubics):
        # pick n for a quarter of an image pixel.
        second_difference = np.abs(controls[:-2] - 2 * controls[1:-1] + controls[2:]).max() * scale
        pieces = min(256, max(1, math.ceil(math.sqrt(second_difference * (3 if len(controls) == 4 else 1)))))
        current.extend(_bezier(controls, np.linspace(0, 1, pieces + 1)[1:]))
        position = controls[-1]
    if len(current) > 1:
        contours.append((np.array(current), False))
    return [(points - offset, closed) for points, closed in contours]


def _curve_steps(radius: float, scale: float, sweep: float) -> int:
    radius_in_pixels = radius * scale
    if radius_in_pixels <= 0.25:
        return 4
    step = 2 * math.acos(1 - 0.25 / radius_in_pixels)  # the angle whose chord strays a quarter pixel
    return min(4096, max(8, math.ceil(abs(sweep) / step)))


def _arc(rx: float, ry: float, start: float, end: float, clockwise: bool, scale: float) -> tuple[np.ndarray, bool]:
    """An elliptical arc as canvas `arc()` draws it (angles in degrees, clockwise on screen unless told otherwise)."""
    sweep = end - start if clockwise else start - end
    full = sweep >= 360
    if not full:
        sweep %= 360
    sweep = 360.0 if full else sweep
    direction = 1 if clockwise else -1
    steps = _curve_steps(max(rx, ry), scale, math.radians(sweep))
    angles = np.radians(start + direction * np.linspace(0, sweep, steps + 1))
    if full:
        angles = angles[:-1]
    return np.stack([rx * np.cos(angles), ry * np.sin(angles)], axis=1), full


def _rect_outline(width: float, height: float, rx: float, ry: float, scale: float) -> np.ndarray:
    if rx <= 0 or ry <= 0:
        return np.array(
            [[-width / 2, -height / 2], [width / 2, -height / 2], [width / 2, height / 2], [-width / 2, height / 2]]
        )
    quarter = _curve_steps(max(rx, ry), scale, math.pi / 2)
    corners = [
        (width / 2 - rx, -height / 2 + ry, -90),
        (width / 2 - rx, height / 2 - ry, 0),
        (-width / 2 + rx, height / 2 - ry, 90),
        (-width / 2 + rx, -height / 2 + ry, 180),
    ]
    outline = []
    for cx, cy, first in corners:
        angles = np.radians(first + np.linspace(0, 90, quarter + 1))
        outline.append(np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1))
    return np.concatenate(outline)


# --- rasterising ----------------------------------------------------------------------------------------------------


_SHIFT = 4  # OpenCV fixed-point fraction bits: shapes are placed to 1/16 pixel
_LIMIT = 2**20  # image coordinates beyond this would overflow OpenCV's fixed point
_BAND_ROWS = 256
_CROSSINGS_PER_CHUNK = 1_000_000


def _paint(mask: np.ndarray, shape: _Shape, value: int, budget: _Budget) -> None:
    if shape.fill:
        _fill_nonzero(mask, shape.fill, value, budget)
    if shape.strokes and shape.half_width > 0:
        stroker = _Stroker(mask, shape, value, budget)
        for points, closed in shape.strokes:
            stroker.stroke(points, closed)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Continuous image coordinates -> OpenCV fixed point, where integer coordinates are pixel centres."""
    if not np.isfinite(points).all() or np.abs(points).max(initial=0) > _LIMIT:
        raise BadMaskError(_malformed("coordinates far outside the canvas"))
    return np.round((points - 0.5) * (1 << _SHIFT)).astype(np.int32)


def _fill_nonzero(mask: np.ndarray, contours: list[np.ndarray], value: int, budget: _Budget) -> None:
    """Fill closed contours with the canvas's default non-zero winding rule, sampling at pixel centres.

    (OpenCV's fillPoly uses even-odd, which would leave holes where a polygon overlaps itself.) Works in bands of
    rows and chunks of edge crossings so memory stays small whatever the drawing.
    """
    height, width = mask.shape
    starts = np.concatenate(contours)
    ends = np.concatenate([np.roll(contour, -1, axis=0) for contour in contours])
    _fixed(starts)  # range check
    sloped = starts[:, 1] != ends[:, 1]
    x0, y0, x1, y1 = starts[sloped, 0], starts[sloped, 1], ends[sloped, 0], ends[sloped, 1]
    # Each edge crosses the rows whose centre (row + 0.5) lies in [min(y0, y1), max(y0, y1)).
    first = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, height).astype(np.int64)
    last = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, height).astype(np.int64)
    if not (last > first).any():
        return
    budget.add_crossings(int((last - first).sum()))
    left = int(np.clip(np.floor(min(x0.min(), x1.min())), 0, width))
    right = int(np.clip(np.ceil(max(x0.max(), x1.max())) + 1, 0, width))
    if right <= left:
        return
    direction = np.where(y1 > y0, 1, -1).astype(np.int32)
    inverse_slope = (x1 - x0) / (y1 - y0)
    for band_top in range(int(first.min()), int(last.max()), _BAND_ROWS):
        band_bottom = min(band_top + _BAND_ROWS, height)
        low, high = np.maximum(first, band_top), np.minimum(last, band_bottom)
        edges = np.flatnonzero(high > low)
        if not len(edges):
            continue
        # winding[row, column] counts signed crossings at that column; its running sum along the row is the
        # winding number of each pixel centre.
        winding = np.zeros((band_bottom - band_top, right - left + 1), np.int32)
        counts = high[edges] - low[edges]
        for chunk in np.array_split(edges, max(1, int(counts.sum()) // _CROSSINGS_PER_CHUNK + 1)):
            chunk_counts = high[chunk] - low[chunk]
            edge = np.repeat(chunk, chunk_counts)
            rows = low[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(chunk_counts) - chunk_counts, chunk_counts)
            crossing = x0[edge] + (rows + 0.5 - y0[edge]) * inverse_slope[edge]
            columns = np.clip(np.ceil(crossing - 0.5).astype(np.int64) - left, 0, right - left)
            np.add.at(winding, (rows - band_top, columns), direction[edge])
        inside = np.cumsum(winding, axis=1)[:, :-1] != 0
        mask[band_top:band_bottom, left:right][inside] = value


class _Stroker:
    """Strokes polylines the way a canvas does, for a circular pen in pen coordinates mapped affinely to the image.

    Each segment is a quadrilateral, each join a disc (round), a wedge (miter) or a triangle (bevel), each cap a
    disc (round) or a square extension (square); all are drawn in pen coordinates and mapped to the image, so a
    non-uniform canvas -> image map stretches the pen exactly as it stretches the drawing.
    """

    def __init__(self, mask: np.ndarray, shape: _Shape, value: int, budget: _Budget):
        self.mask, self.value, self.budget = mask, value, budget
        self.matrix = shape.pen_to_image
        self.half = shape.half_width
        self.cap, self.join, self.miter_limit = shape.cap, shape.join, shape.miter_limit
        rotation, axes, _ = np.linalg.svd(self.matrix[:2, :2])
        self.ellipse_axes = (
            int(round(self.half * axes[0] * (1 << _SHIFT))),
            int(round(self.half * axes[1] * (1 << _SHIFT))),
        )
        self.ellipse_angle = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
        self.width_in_pixels = 2 * self.half * float(axes[0])
        self.pixels_per_unit = float(axes[0])

    def stroke(self, points: np.ndarray, closed: bool) -> None:
        steps = np.diff(points, axis=0)
        points = points[np.concatenate([[True], np.hypot(steps[:, 0], steps[:, 1]) > 1e-9])]
        if closed and len(points) > 1 and np.hypot(*(points[0] - points[-1])) <= 1e-9:
            points = points[:-1]
        if len(points) == 1:
            self._dot(points[0])
            return
        starts = points if closed else points[:-1]
        ends = np.roll(points, -1, axis=0) if closed else points[1:]
        lengths = np.hypot(*(ends - starts).T)
        directions = (ends - starts) / lengths[:, None]
        normals = np.stack([-directions[:, 1], directions[:, 0]], axis=1) * self.half
        self.budget.add_paint(float(lengths.sum()) * self.pixels_per_unit * self.width_in_pixels)
        self.budget.add_paint(len(points) * self.width_in_pixels**2)
        self._polygons(np.stack([starts + normals, ends + normals, ends - normals, starts - normals], axis=1))
        if closed:
            self._joins(points, directions[np.arange(len(points)) - 1], directions)
        else:
            self._joins(points[1:-1], directions[:-1], directions[1:])
            self._cap(points[0], -directions[0])
            self._cap(points[-1], directions[-1])

    def _joins(self, vertices: np.ndarray, incoming: np.ndarray, outgoing: np.ndarray) -> None:
        if not len(vertices):
            return
        cos_turn = np.clip((incoming * outgoing).sum(axis=1), -1, 1)
        cross = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
        outer = -np.sign(cross)[:, None]  # the side of each join away from the turn
        normal_in = np.stack([-incoming[:, 1], incoming[:, 0]], axis=1) * self.half * outer
        normal_out = np.stack([-outgoing[:, 1], outgoing[:, 0]], axis=1) * self.half * outer
        turning = cross != 0
        if self.join == "round":
            # Under an 8-degree turn a bevel is within 0.3% of the pen's radius of the disc: cheaper, same pixels.
            sharp = cos_turn < math.cos(math.radians(8))
            for vertex in vertices[sharp]:
                self._disc(vertex)
            bevel = turning & ~sharp
        elif self.join == "miter":
            ratio = np.sqrt(2 / np.maximum(1 + cos_turn, 1e-12))  # miter length / stroke width
            miter = turning & (ratio <= self.miter_limit)
            tips = vertices + (normal_in + normal_out) / (1 + cos_turn[:, None]).clip(1e-12)
            self._polygons(np.stack([vertices, vertices + normal_in, tips, vertices + normal_out], axis=1)[miter])
            bevel = turning & ~miter
        else:
            bevel = turning
        self._polygons(np.stack([vertices, vertices + normal_in, vertices + normal_out], axis=1)[bevel])

    def _cap(self, end: np.ndarray, outward: np.ndarray) -> None:
        if self.cap == "round":
            self._disc(end)
        elif self.cap == "square":
            normal = np.array([-outward[1], outward[0]]) * self.half
            reach = outward * self.half
            self._polygons(np.array([[end + normal, end + normal + reach, end - normal + reach, end - normal]]))

    def _dot(self, point: np.ndarray) -> None:
        """A zero-length subpath: canvases draw its caps (a disc or a square), nothing for butt caps."""
        if self.cap == "round":
            self._disc(point)
        elif self.cap == "square":
            h = self.half
            self._polygons(np.array([[point + (-h, -h), point + (h, -h), point + (h, h), point + (-h, h)]]))

    def _disc(self, centre: np.ndarray) -> None:
        x, y = _fixed(_apply(self.matrix, centre[None, :]))[0]
        cv2.ellipse(
            self.mask,
            (int(x), int(y)),
            self.ellipse_axes,
            self.ellipse_angle,
            0,
            360,
            self.value,
            -1,
            cv2.LINE_8,
            _SHIFT,
        )

    def _polygons(self, polygons: np.ndarray) -> None:
        if not len(polygons):
            return
        fixed = _fixed(_apply(self.matrix, polygons.reshape(-1, 2))).reshape(polygons.shape)
        for polygon in fixed:
            cv2.fillConvexPoly(self.mask, polygon, self.value, cv2.LINE_8, _SHIFT)
