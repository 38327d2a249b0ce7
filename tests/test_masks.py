"""Masks: from files and from the drawable canvas, the mask operations, the crop box and the paste-back."""

from __future__ import annotations

import copy
import io
import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image, ImageChops
from scipy.ndimage import distance_transform_edt

from core.errors import BadMaskError
from core.masks import (
    bounding_box,
    feather,
    grow,
    invert,
    mask_from_canvas,
    mask_from_image,
    require_not_empty,
    threshold,
)
from core.region import crop_box, paste_back

PHOTO = (4000, 3000)
CANVAS = (600, 450)
FIT = {"natural_width": 4000, "natural_height": 3000, "scale_x": 0.15, "scale_y": 0.15, "offset_x": 0, "offset_y": 0}


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def disc_mask(size: tuple[int, int], centre: tuple[int, int], radius: int) -> Image.Image:
    pixels = np.zeros((size[1], size[0]), np.uint8)
    cv2.circle(pixels, centre, radius, 255, -1)
    return Image.fromarray(pixels)


def values(mask: Image.Image) -> set[int]:
    return set(np.unique(np.asarray(mask)).tolist())


# --- masks from uploaded files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stroke",
    [(255, 0, 0, 255), (0, 0, 255, 255), (255, 0, 0, 60), (0, 0, 0, 255)],
    ids=["red", "blue", "faint", "black"],
)
def test_strokes_on_a_transparent_canvas_image_come_from_alpha_never_colour(stroke):
    canvas = np.zeros((120, 160, 4), np.uint8)  # fully transparent
    canvas[40:60, 30:130] = stroke
    mask = mask_from_image(png(canvas), (160, 120))
    assert mask.mode == "L" and values(mask) == {0, 255}
    assert np.array_equal(np.asarray(mask) > 0, canvas[:, :, 3] > 0)


def test_an_opaque_mask_image_is_read_by_luminance():
    grey = np.zeros((80, 80), np.uint8)
    grey[:, 20:40], grey[:, 40:60], grey[:, 60:] = 127, 128, 255
    mask = np.asarray(mask_from_image(png(np.dstack([grey] * 3)), (80, 80)))
    assert (mask[:, :40] == 0).all() and (mask[:, 40:] == 255).all()
    # An "L" image object works the same as a file.
    assert np.array_equal(np.asarray(mask_from_image(Image.fromarray(grey), (80, 80))), mask)


def test_a_mask_of_the_same_aspect_is_resized_nearest():
    small = np.zeros((75, 100), np.uint8)
    small[25:50, 25:75] = 255
    mask = mask_from_image(png(small), (400, 300))
    assert mask.size == (400, 300) and values(mask) == {0, 255}
    assert bounding_box(mask) == (100, 100, 300, 200)


def test_a_small_mask_may_be_a_rounded_pixel_off_the_aspect():
    # 4000x3000 scaled to 21 px wide is 15.75 high; a tool that floors it writes 21x15.
    assert mask_from_image(png(np.full((15, 21), 255, np.uint8)), (4000, 3000)).size == (4000, 3000)


def test_a_mask_of_another_aspect_is_refused_naming_both_sizes():
    with pytest.raises(BadMaskError) as caught:
        mask_from_image(png(np.zeros((100, 100), np.uint8)), (400, 300))
    assert "100x100" in str(caught.value) and "400x300" in str(caught.value)


@pytest.mark.parametrize("payload", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_an_undecodable_mask_file_is_refused(payload):
    with pytest.raises(BadMaskError) as caught:
        mask_from_image(payload, (64, 64))
    assert str(caught.value).startswith("unusable mask: ")


# --- masks from the canvas: real Fabric 7.4 objects ----------------------------------------------------------------
#
# FABRIC_FIXTURES (end of this file) were produced by running the Fabric.js 7.4 bundled in
# streamlit-drawable-canvas 0.13 (frontend/build/index-*.js) under node: each object is built the way the
# component's tools build it (freedraw = PencilBrush.createPath over its points->path conversion, rect/circle/line/
# polygon tools with their options), then edited the way the edit tool does (set left/top, scaleX/Y, angle), and
# serialised with toObject() exactly as canvas.toObject() sends it. The probes are canvas points at least 1.5 px
# inside / outside the painted area, computed from Fabric's own calcTransformMatrix and plain distance geometry
# (never from core.masks). The canvas is 600x450 and shows a 4000x3000 photo at scale 0.15.


def fixture(name: str) -> dict:
    return copy.deepcopy(next(item for item in FABRIC_FIXTURES if item["name"] == name))


def canvas_mask(objects: list[dict], **options) -> np.ndarray:
    options.setdefault("background_fit", FIT)
    mask = mask_from_canvas({"version": "7.4.0", "objects": objects}, PHOTO, canvas_size=CANVAS, **options)
    assert mask.mode == "L" and mask.size == PHOTO
    return np.asarray(mask)


def at_canvas_point(mask: np.ndarray, point: list[float]) -> int:
    return int(mask[int(point[1] / FIT["scale_y"]), int(point[0] / FIT["scale_x"])])


def probe_misses(mask: np.ndarray, item: dict) -> tuple[list, list]:
    return (
        [point for point in item["inside"] if at_canvas_point(mask, point) != 255],
        [point for point in item["outside"] if at_canvas_point(mask, point) != 0],
    )


@pytest.mark.parametrize(
    "name",
    [
        "freedraw",
        "freedraw_moved",
        "freedraw_scaled_rotated",
        "rect",
        "rect_scaled_rotated",
        "circle",
        "polygon_moved",
        "line",
    ],
)
def test_fabric_objects_land_where_fabric_draws_them(name):
    item = fixture(name)
    mask = canvas_mask(item["objects"])
    assert values(mask) == {0, 255}
    assert probe_misses(mask, item) == ([], [])


def test_the_probes_notice_an_object_three_canvas_pixels_off():
    item = fixture("rect")
    item["objects"][0]["top"] += 3
    missed_inside, hit_outside = probe_misses(canvas_mask(item["objects"]), item)
    assert missed_inside or hit_outside


def test_a_moved_stroke_lands_moved():
    item, moved = fixture("freedraw"), fixture("freedraw_moved")
    assert moved["objects"][0]["path"] == item["objects"][0]["path"]  # same path, only left/top differ
    before, after = canvas_mask(item["objects"]), canvas_mask(moved["objects"])
    left, top, _, _ = Image.fromarray(before).getbbox()
    moved_left, moved_top, _, _ = Image.fromarray(after).getbbox()
    assert abs(moved_left - left - 90 / 0.15) <= 2 and abs(moved_top - top - 55 / 0.15) <= 2


def test_a_stroke_is_rasterised_crisply_at_full_resolution():
    # A straight 20-px brush stroke along canvas y = 100: in the 4000x3000 photo it covers y in
    # [90 / 0.15, 110 / 0.15) = [600, 733.3) sharply, not in 6.7-pixel steps of an upscaled canvas bitmap.
    mask = canvas_mask(fixture("straight")["objects"])
    column = mask[:, 1000]
    assert (column[601:733] == 255).all()
    assert (column[:599] == 0).all() and (column[735:] == 0).all()
    middle = mask[666]
    assert (middle[int(100 / 0.15) : int(200 / 0.15)] == 255).all()


def test_eraser_strokes_remove_paint_in_order():
    item = fixture("paint_then_eraser")
    paint, eraser = item["objects"]
    marked = []

    def is_eraser(obj: dict) -> bool:  # how a UI marks its eraser strokes; the core never looks at colours itself
        marked.append(obj["type"])
        return obj is eraser

    mask = canvas_mask(item["objects"], is_eraser=is_eraser)
    assert probe_misses(mask, item) == ([], [])
    assert marked == ["Path", "Path"]
    # Erasing first and painting after leaves the paint whole.
    repainted = canvas_mask([eraser, paint], is_eraser=lambda obj: obj is eraser)
    assert np.array_equal(repainted, canvas_mask([paint]))
    # Fabric's own "destination-out" compositing erases without being told.
    composited = dict(eraser, globalCompositeOperation="destination-out")
    assert np.array_equal(canvas_mask([paint, composited]), mask)


def test_rects_and_circles_are_filled_unless_their_fill_is_transparent():
    rect = fixture("rect")["objects"][0]  # 80x50 at (200, 150), 6-px uniform stroke
    centre = [240.0, 175.0]
    assert at_canvas_point(canvas_mask([rect]), centre) == 255
    outline = canvas_mask([dict(rect, fill="rgba(238, 238, 238, 0)")])
    assert at_canvas_point(outline, centre) == 0 and at_canvas_point(outline, [200.0, 175.0]) == 255
    disc = fixture("circle")["objects"][0]
    filled = canvas_mask([disc])
    left, top, right, bottom = Image.fromarray(filled).getbbox()
    centre_y, centre_x = (top + bottom) // 2, (left + right) // 2
    ring = canvas_mask([dict(disc, fill="transparent")])
    assert filled[centre_y, centre_x] == 255 and ring[centre_y, centre_x] == 0 and ring.any()


def test_type_names_in_either_case_and_unknown_types():
    rect = fixture("rect")["objects"][0]
    assert np.array_equal(canvas_mask([dict(rect, type="rect")]), canvas_mask([rect]))
    text = {"type": "IText", "left": 10, "top": 10, "text": "hello", "fill": "#000"}
    assert not canvas_mask([text, {"type": "Image", "left": 0, "top": 0}]).any()


def test_a_self_overlapping_polygon_fills_with_the_nonzero_rule():
    star = [
        {"x": 300 + 100 * math.sin(k * 4 * math.pi / 5), "y": 225 - 100 * math.cos(k * 4 * math.pi / 5)}
        for k in range(5)
    ]
    polygon = {
        "type": "Polygon",
        "left": 300,
        "top": 235,
        "originX": "center",
        "originY": "center",
        "points": star,
        "fill": "#eee",
        "stroke": None,
        "strokeWidth": 1,
    }
    mask = np.asarray(mask_from_canvas({"objects": [polygon]}, CANVAS, canvas_size=CANVAS))
    ys = [point["y"] for point in star]
    centre_y = 235 + 225 - (min(ys) + max(ys)) / 2  # Fabric centres the points' bounding box on (left, top)
    assert mask[round(centre_y), 300] == 255  # the pentagon inside the star is not a hole (even-odd would be)
    assert mask[round(centre_y) - 90, 300] == 255 and mask[round(centre_y), 200] == 0


def test_contain_fit_with_offset_and_a_downscaled_preview_map_to_full_resolution():
    rect = {
        "type": "Rect",
        "left": 100,
        "top": 175,
        "originX": "left",
        "originY": "top",
        "width": 60,
        "height": 30,
        "fill": "#fff",
        "stroke": None,
        "strokeWidth": 0,
    }
    # A square 600x600 canvas shows the 4000x3000 photo at 0.15, letterboxed 75 px from the top.
    contain = dict(FIT, offset_y=75)
    mask = mask_from_canvas({"objects": [rect]}, PHOTO, canvas_size=(600, 600), background_fit=contain)
    expected = (round(100 / 0.15), round(100 / 0.15), round(160 / 0.15), round(130 / 0.15))
    assert bounding_box(mask) == pytest.approx(expected, abs=1)
    # The app may put a 1000x750 preview on the canvas at scale 0.6: the same drawing, the same photo pixels.
    preview = {
        "natural_width": 1000,
        "natural_height": 750,
        "scale_x": 0.6,
        "scale_y": 0.6,
        "offset_x": 0,
        "offset_y": 75,
    }
    mapped = mask_from_canvas({"objects": [rect]}, PHOTO, canvas_size=(600, 600), background_fit=preview)
    assert bounding_box(mapped) == pytest.approx(expected, abs=1)
    with pytest.raises(BadMaskError, match="aspect ratio"):
        mask_from_canvas({"objects": [rect]}, (4000, 4000), canvas_size=(600, 600), background_fit=preview)
    # A wide photo's preview rounded to whole pixels still maps (700x70 for 4001x400, exactly 69.98 high).
    wide = {"natural_width": 700, "natural_height": 70, "scale_x": 1, "scale_y": 1, "offset_x": 0, "offset_y": 0}
    assert mask_from_canvas({"objects": [rect]}, (4001, 400), canvas_size=(700, 70), background_fit=wide).size == (
        4001,
        400,
    )


def test_without_a_fit_the_canvas_is_stretched_over_the_image():
    rect = {
        "type": "Rect",
        "left": 60,
        "top": 40,
        "originX": "left",
        "originY": "top",
        "width": 30,
        "height": 20,
        "fill": "#fff",
        "stroke": None,
        "strokeWidth": 0,
    }
    mask = mask_from_canvas({"objects": [rect]}, (1200, 1200), canvas_size=(600, 400))
    assert bounding_box(mask) == (120, 120, 180, 180)


def test_canvas_pixels_are_the_fallback_read_from_alpha():
    pixels = np.zeros((450, 600, 4), np.uint8)
    pixels[100:130, 200:260] = (255, 0, 0, 255)  # red
    pixels[300:310, 10:40] = (0, 0, 255, 30)  # faint blue
    mask = mask_from_canvas({"objects": []}, PHOTO, canvas_size=CANVAS, background_fit=FIT, image_data=pixels)
    assert values(mask) == {0, 255}
    red_box = bounding_box(mask.crop((0, 0, 4000, 1500)))
    assert red_box == pytest.approx((200 / 0.15, 100 / 0.15, 260 / 0.15, 130 / 0.15), abs=1)
    assert np.asarray(mask)[int(305 / 0.15), int(25 / 0.15)] == 255
    # Vector objects, when present, win over the bitmap.
    vector = mask_from_canvas(
        {"objects": fixture("rect")["objects"]}, PHOTO, canvas_size=CANVAS, background_fit=FIT, image_data=pixels
    )
    assert np.asarray(vector)[int(115 / 0.15), int(230 / 0.15)] == 0


def stroke_with(**changes) -> dict:
    return {"objects": [dict(fixture("freedraw")["objects"][0], **changes)]}


def stroke_with_command(command: list) -> dict:
    item = fixture("freedraw")["objects"][0]
    item["path"].append(command)
    return {"objects": [item]}


FORGED = {
    "not-a-dict": lambda: [1, 2, 3],
    "a-string": lambda: "objects",
    "objects-not-a-list": lambda: {"objects": {"type": "Path"}},
    "too-many-objects": lambda: {"objects": [{"type": "Rect"}] * 10_001},
    "object-not-a-dict": lambda: {"objects": ["not an object"]},
    "nan": lambda: stroke_with(left=float("nan")),
    "infinite": lambda: stroke_with(top=float("inf")),
    "number-as-string": lambda: stroke_with(left="150"),
    "bool-as-number": lambda: stroke_with(scaleX=True),
    "absurd": lambda: stroke_with(left=1e12),
    "negative-width": lambda: stroke_with(strokeWidth=-5),
    "unknown-origin": lambda: stroke_with(originX="middle"),
    "unknown-command": lambda: stroke_with_command(["X", 1, 2]),
    "short-command": lambda: stroke_with_command(["Q", 1, 2, 3]),
    "nan-in-path": lambda: stroke_with_command(["L", 1, float("nan")]),
    "path-as-string": lambda: stroke_with(path="M 0 0 L 10 10"),
    "bad-point": lambda: {"objects": [{"type": "Polygon", "points": [{"x": 1}], "fill": "#fff"}]},
}


@pytest.mark.parametrize("case", FORGED)
def test_forged_canvas_json_is_refused(case):
    with pytest.raises(BadMaskError, match="malformed"):
        mask_from_canvas(FORGED[case](), PHOTO, canvas_size=CANVAS, background_fit=FIT)


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((450, 600, 3), np.uint8),
        np.zeros((450, 601, 4), np.uint8),
        np.zeros((450, 600, 4), np.float32),
        np.zeros((600, 450, 4), np.uint8),
        b"\x89PNG not pixels",
    ],
    ids=["rgb", "wrong-width", "float", "transposed", "bytes"],
)
def test_forged_canvas_pixels_are_refused(pixels):
    with pytest.raises(BadMaskError, match="malformed"):
        mask_from_canvas(None, PHOTO, canvas_size=CANVAS, background_fit=FIT, image_data=pixels)


@pytest.mark.parametrize(
    "fit",
    [{"scale_x": 0.15}, dict(FIT, scale_x=0), dict(FIT, offset_y=float("nan")), dict(FIT, natural_width="4000")],
    ids=["missing", "zero-scale", "nan", "string"],
)
def test_a_forged_background_fit_is_refused(fit):
    with pytest.raises(BadMaskError, match="malformed"):
        mask_from_canvas({"objects": []}, PHOTO, canvas_size=CANVAS, background_fit=fit)


def test_coordinates_far_outside_the_canvas_are_refused():
    item = fixture("rect")["objects"][0]
    with pytest.raises(BadMaskError, match="malformed"):
        mask_from_canvas(
            {"objects": [dict(item, scaleX=5000, scaleY=5000)]}, PHOTO, canvas_size=CANVAS, background_fit=FIT
        )


def test_an_empty_drawing_gives_an_empty_mask():
    for json_data in (None, {}, {"objects": []}, {"objects": None}):
        assert bounding_box(mask_from_canvas(json_data, (64, 48), canvas_size=(64, 48))) is None


# --- operations -----------------------------------------------------------------------------------------------------


def test_threshold():
    ramp = Image.fromarray(np.arange(256, dtype=np.uint8)[None, :].repeat(4, axis=0))
    result = np.asarray(threshold(ramp))[0]
    assert (result[:128] == 0).all() and (result[128:] == 255).all()
    assert np.asarray(threshold(ramp, 200))[0, 199] == 0 and np.asarray(threshold(ramp, 200))[0, 200] == 255
    with pytest.raises(ValueError):
        threshold(ramp, 0)


def test_grow_matches_the_exact_euclidean_disc_and_shrink_its_dual():
    # SciPy's exact Euclidean distance transform is the reference: grown = within `pixels` of a mask pixel;
    # shrunk = farther than `pixels` from every non-mask pixel (the image border is not a non-mask pixel).
    rng = np.random.default_rng(1)
    mask = np.zeros((120, 160), np.uint8)
    for _ in range(6):
        cv2.circle(mask, (int(rng.integers(0, 160)), int(rng.integers(0, 120))), int(rng.integers(3, 25)), 255, -1)
    for pixels in (1, 5, 12):
        grown = np.asarray(grow(Image.fromarray(mask), pixels)) > 0
        assert np.array_equal(grown, distance_transform_edt(mask == 0) <= pixels)
        shrunk = np.asarray(grow(Image.fromarray(mask), -pixels)) > 0
        assert np.array_equal(shrunk, distance_transform_edt(mask > 0) > pixels)
    assert values(grow(Image.fromarray(mask), 5)) == {0, 255}


def test_grow_zero_is_unchanged_and_shrinking_does_not_pull_away_from_the_border():
    mask = Image.fromarray(np.pad(np.full((40, 20), 255, np.uint8), ((0, 0), (0, 60))))  # the left 20 columns
    assert grow(mask, 0) is mask
    shrunk = np.asarray(grow(mask, -4))
    assert (shrunk[5:35, 0] == 255).all() and (shrunk[:, 16:] == 0).all()
    assert bounding_box(grow(Image.new("L", (30, 30)), 7)) is None


def test_feather_blurs_only_near_the_edge_and_equals_a_whole_image_blur():
    mask = disc_mask((400, 300), (120, 150), 50)
    feathered = np.asarray(feather(mask, 6))
    assert feathered[150, 120] == 255 and feathered[150, 300] == 0
    edge = feathered[150, 170]
    assert 100 < edge < 160
    size = 2 * math.ceil(3 * 6) + 1
    whole = cv2.GaussianBlur(np.asarray(mask), (size, size), 6, borderType=cv2.BORDER_REFLECT_101)
    assert np.array_equal(feathered, whole)
    at_border = disc_mask((400, 300), (5, 150), 40)  # touches the image edge
    whole = cv2.GaussianBlur(np.asarray(at_border), (size, size), 6, borderType=cv2.BORDER_REFLECT_101)
    assert np.array_equal(np.asarray(feather(at_border, 6)), whole)
    assert feather(mask, 0) is mask


def test_invert_and_empty_masks():
    mask = disc_mask((50, 40), (25, 20), 8)
    assert np.array_equal(np.asarray(invert(mask)), 255 - np.asarray(mask))
    require_not_empty(mask)
    with pytest.raises(BadMaskError) as caught:
        require_not_empty(Image.new("L", (50, 40)))
    assert str(caught.value) == "the mask is empty: paint over the area to change"


def test_bounding_box_is_exclusive():
    pixels = np.zeros((40, 50), np.uint8)
    pixels[10:20, 5:30] = 255
    assert bounding_box(Image.fromarray(pixels)) == (5, 10, 30, 20)
    assert bounding_box(Image.new("L", (5, 5))) is None


def blob(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    pixels = np.zeros((size[1], size[0]), np.uint8)
    pixels[box[1] : box[3], box[0] : box[2]] = 255
    return Image.fromarray(pixels)


def test_crop_box_pads_then_grows_to_the_aspect_around_the_mask():
    box = crop_box(blob((1000, 800), (400, 300, 500, 320)), padding=10, aspect=1.0, min_side=0)
    assert box == (390, 250, 510, 370)  # 120x40 padded, grown to 120x120 about the same centre
    wide = crop_box(blob((1000, 800), (400, 300, 500, 320)), padding=0, aspect=1.5, min_side=0)
    assert (wide[2] - wide[0]) / (wide[3] - wide[1]) == pytest.approx(1.5, abs=0.02)
    tall = crop_box(blob((1000, 800), (400, 300, 420, 400)), padding=0, aspect=1.0, min_side=0)
    assert tall == (360, 300, 460, 400)  # widened to 100x100, never cut down to 20x20


def test_crop_box_reaches_the_minimum_side_but_never_exceeds_the_image():
    box = crop_box(blob((4096, 4096), (2000, 1500, 2128, 1628)), padding=32, aspect=1.0, min_side=512)
    assert box[2] - box[0] == box[3] - box[1] == 512
    assert box[0] <= 2000 - 32 and box[2] >= 2128 + 32 and box[1] <= 1500 - 32 and box[3] >= 1628 + 32
    assert crop_box(blob((300, 200), (100, 50, 120, 70)), padding=32, aspect=1.0, min_side=512) == (0, 0, 300, 200)


def test_crop_box_moves_inside_the_image_at_a_corner():
    box = crop_box(blob((1000, 800), (0, 0, 30, 30)), padding=32, aspect=1.0, min_side=256)
    assert box == (0, 0, 256, 256)
    box = crop_box(blob((1000, 800), (980, 780, 1000, 800)), padding=32, aspect=1.0, min_side=256)
    assert box == (744, 544, 1000, 800)


def test_crop_box_of_a_feathered_mask_holds_the_whole_blend_zone():
    feathered = feather(grow(disc_mask((2000, 1500), (700, 600), 64), 8), 10)
    box = crop_box(feathered, padding=0, aspect=1.0, min_side=0)
    inside = np.zeros((1500, 2000), bool)
    inside[box[1] : box[3], box[0] : box[2]] = True
    assert not np.asarray(feathered)[~inside].any()
    with pytest.raises(BadMaskError):
        crop_box(Image.new("L", (100, 100)), padding=8, aspect=1.0, min_side=64)


def test_paste_back_leaves_every_unmasked_pixel_byte_identical_rgb(astronaut):
    feathered = feather(grow(disc_mask((512, 512), (300, 200), 40), 4), 6)
    box = crop_box(feathered, padding=32, aspect=1.0, min_side=128)
    noise = np.random.default_rng(0).integers(0, 256, (box[3] - box[1], box[2] - box[0], 3), dtype=np.uint8)
    before = np.asarray(astronaut).copy()
    result = paste_back(astronaut, Image.fromarray(noise), feathered, box)
    out, weight = np.asarray(result), np.asarray(feathered)
    assert result.mode == "RGB" and result.size == astronaut.size
    assert np.array_equal(out[weight == 0], before[weight == 0])
    full = np.zeros_like(before)
    full[box[1] : box[3], box[0] : box[2]] = noise
    assert np.array_equal(out[weight == 255], full[weight == 255])
    assert not np.array_equal(out, before)
    assert np.array_equal(np.asarray(astronaut), before)  # the original is not modified


def test_paste_back_keeps_alpha_outside_the_mask_and_makes_painted_pixels_opaque(astronaut):
    rgba = astronaut.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))  # partial alpha everywhere
    rgba.putalpha(Image.fromarray(alpha))
    feathered = feather(disc_mask((512, 512), (256, 256), 50), 8)
    box = crop_box(feathered, padding=16, aspect=1.0, min_side=0)
    generated = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), (0, 255, 0))
    result = paste_back(rgba, generated, feathered, box)
    out, before, weight = np.asarray(result), np.asarray(rgba), np.asarray(feathered)
    assert result.mode == "RGBA"
    assert np.array_equal(out[weight == 0], before[weight == 0])
    painted = weight > 0
    assert np.array_equal(out[painted][:, 3], np.maximum(before[painted][:, 3], weight[painted]))


def test_paste_back_on_a_large_photo_touches_only_the_masked_pixels(chelsea_4096):
    feathered = feather(grow(disc_mask((4096, 4096), (3000, 900), 64), 8), 8)
    box = crop_box(feathered, padding=32, aspect=1.0, min_side=512)
    assert (box[2] - box[0], box[3] - box[1]) == (512, 512)
    result = paste_back(chelsea_4096, Image.new("RGB", (512, 512), (255, 0, 255)), feathered, box)
    changed = ImageChops.difference(result, chelsea_4096).getbbox()
    assert changed is not None and box[0] <= changed[0] and box[1] <= changed[1]
    assert changed[2] <= box[2] and changed[3] <= box[3]
    weight = np.asarray(feathered.crop(box))
    out, before = np.asarray(result.crop(box)), np.asarray(chelsea_4096.crop(box))
    assert np.array_equal(out[weight == 0], before[weight == 0])


def test_paste_back_refuses_mismatched_inputs(astronaut):
    mask = disc_mask((512, 512), (100, 100), 20)
    with pytest.raises(ValueError):
        paste_back(astronaut, Image.new("RGB", (10, 10)), mask, (0, 0, 20, 20))
    with pytest.raises(ValueError):
        paste_back(astronaut, Image.new("RGB", (20, 20)), mask.resize((256, 256)), (0, 0, 20, 20))
    with pytest.raises(ValueError):
        paste_back(astronaut, Image.new("RGB", (20, 20)), mask, (500, 500, 520, 520))


@pytest.fixture(scope="module")
def chelsea_4096() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((4096, 4096))


def test_the_module_keeps_colour_out_of_coverage():
    """Recolouring every object (fill and stroke) never changes the mask: coverage is geometry and alpha only."""
    objects = [obj for item in FABRIC_FIXTURES[:8] for obj in item["objects"]]
    recoloured = [
        dict(obj, stroke="#123456" if obj.get("stroke") else None, fill="#abcdef" if obj.get("fill") else None)
        for obj in objects
    ]
    assert np.array_equal(canvas_mask(objects), canvas_mask(recoloured))


FABRIC_FIXTURES = json.loads(
    """
[
{"name":"freedraw","objects":[{"type":"Path","version":"7.4.0","originX":"center","originY":"center","left":132,"top":79.9866,"width":144.024,"height":49.7569,"fill":null,"stroke":"#ff0000","strokeWidth":12,"strokeDashArray":null,"strokeLineCap":"round","strokeDashOffset":0,"strokeLineJoin":"round","strokeUniform":false,"strokeMiterLimit":10,"scaleX":1,"scaleY":1,"angle":0,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0,"path":[["M",59.988,79.988],["Q",60,80,63,83.09254949068153],["Q",66,86.18509898136307,69,89.08536872323407],["Q",72,91.98563846510507,75,94.51330373284421],["Q",78,97.04096900058335,81,99.03887181039038],["Q",84,101.0367746201974,87,102.38069505204354],["Q",90,103.72461548388965,93,104.3309950744955],["Q",96,104.93737466510136,99,104.7685116684749],["Q",102,104.59964867184843,105,103.66604217124524],["Q",108,102.73243567064205,111,101.09213279642003],["Q",114,99.45182992219803,117,97.20681676239846],["Q",120,94.9618036025989,123,92.2516642019536],["Q",126,89.5415248013083,129,86.5347625014025],["Q",132,83.52800020149668,135,80.411560919122],["Q",138,77.2951216367473,141,74.26277047225341],["Q",144,71.2304193077595,147,68.47069316960045],["Q",150,65.71096703144141,153,63.395452324371604],["Q",156,61.079937617301795,159,59.3526018307936],["Q",162,57.62526604428541,165,56.59350655132899],["Q",168,55.561747058372575,171,55.28971366699406],["Q",174,55.01768027561555,177,55.52228670451854],["Q",180,56.02689313342154,183,57.27676539887837],["Q",186,58.5266376643352,189,60.4440647625377],["Q",192,62.3614918607402,195,64.82725746162937],["Q",198,67.29302306251854,201,70.1538178037727],["L",204.012,73.02661254502685]]}],"inside":[[149.1,63.6],[70.4,93],[145,73.1],[96.5,107.8],[149.7,68],[93.8,102.6],[189.6,62.7],[103.4,99.9],[68,93.2],[177,52],[202.3,65.7],[72.2,88],[146.4,64.6],[65.2,79.4],[67,91.8],[198.9,65.9],[152.6,58.1],[102.7,102],[70.1,93.3],[71.2,93.4],[93.5,101],[140.5,72.7],[160.4,54.7],[90.5,107.6],[142.2,67.8],[98.2,102.6],[62.4,78.9],[116,95.4],[140,72.3],[62.3,77],[132.6,79.2],[113.3,97.6],[173.7,56.7],[71.8,94.1],[116.7,101.2],[167.7,59.2],[74.3,98.5],[76.9,97.6],[137.3,82.5],[93.7,103.3]],"outside":[[174.5,44.4],[114.3,86],[148.1,82],[128.6,71.3],[131.2,71.4],[112.6,86.9],[141.2,62.5],[204.5,59.2],[163.9,48.9],[98.9,95.8],[151.7,77.8],[120.3,106.6],[159.8,49.3],[168,46],[51.7,75],[145,82.2],[174.6,46.4],[70.7,77.8],[61.3,71.3],[186.6,49.5],[131,69.6],[149.7,76.7],[162.4,68.5],[207.8,62.7],[90.1,111.5],[133.5,68.9],[149.6,52.7],[109,89.5],[94.5,114],[101,113.7],[56.8,89.3],[206.5,63.5],[50.2,78.7],[98.9,115.5],[102.8,114.3],[153.7,74.6],[98.5,114.9],[141.4,63.4],[70.6,100.8],[160.5,68.6]]},
{"name":"freedraw_moved","objects":[{"type":"Path","version":"7.4.0","originX":"center","originY":"center","left":222,"top":134.9866,"width":144.024,"height":49.7569,"fill":null,"stroke":"#ff0000","strokeWidth":12,"strokeDashArray":null,"strokeLineCap":"round","strokeDashOffset":0,"strokeLineJoin":"round","strokeUniform":false,"strokeMiterLimit":10,"scaleX":1,"scaleY":1,"angle":0,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0,"path":[["M",59.988,79.988],["Q",60,80,63,83.09254949068153],["Q",66,86.18509898136307,69,89.08536872323407],["Q",72,91.98563846510507,75,94.51330373284421],["Q",78,97.04096900058335,81,99.03887181039038],["Q",84,101.0367746201974,87,102.38069505204354],["Q",90,103.72461548388965,93,104.3309950744955],["Q",96,104.93737466510136,99,104.7685116684749],["Q",102,104.59964867184843,105,103.66604217124524],["Q",108,102.73243567064205,111,101.09213279642003],["Q",114,99.45182992219803,117,97.20681676239846],["Q",120,94.9618036025989,123,92.2516642019536],["Q",126,89.5415248013083,129,86.5347625014025],["Q",132,83.52800020149668,135,80.411560919122],["Q",138,77.2951216367473,141,74.26277047225341],["Q",144,71.2304193077595,147,68.47069316960045],["Q",150,65.71096703144141,153,63.395452324371604],["Q",156,61.079937617301795,159,59.3526018307936],["Q",162,57.62526604428541,165,56.59350655132899],["Q",168,55.561747058372575,171,55.28971366699406],["Q",174,55.01768027561555,177,55.52228670451854],["Q",180,56.02689313342154,183,57.27676539887837],["Q",186,58.5266376643352,189,60.4440647625377],["Q",192,62.3614918607402,195,64.82725746162937],["Q",198,67.29302306251854,201,70.1538178037727],["L",204.012,73.02661254502685]]}],"inside":[[178.9,162.8],[263,108.1],[214.3,142.8],[263.9,107],[150.3,137.6],[250.3,115.5],[218.9,136.9],[206.1,157.3],[226.3,128.1],[213.6,144.7],[183.6,160.8],[236.6,119.5],[222.5,134],[184.3,162.6],[218.3,139],[170.3,155.2],[244.2,112.8],[295.6,127.4],[248.5,117.3],[262,108.5],[188.9,157.3],[218.3,144.5],[254.6,112.9],[197.3,162.5],[194.7,156.1],[192.4,163.1],[297.7,126.5],[203.5,157.5],[202.5,153],[154.1,134.4],[222.4,132.3],[277.2,116.7],[194.2,163],[295,132.2],[285.1,122.9],[237.6,121.1],[285.3,115.5],[226.8,131.8],[222.3,140.4],[258.6,115.1]],"outside":[[176.9,146.6],[139.7,134],[158.4,131.5],[288.9,109.8],[277.4,125.4],[149,148.4],[266.1,118.3],[195.1,149.9],[140.1,139],[174.6,165.9],[297.9,119.8],[300.4,135.7],[265.8,101],[186.8,148.9],[240,132],[149.1,149],[157.2,155.9],[224.5,147.6],[235.5,139.2],[181.2,147.7],[189,150.5],[174.6,168.2],[216.5,130.2],[168.2,162.9],[289.1,137.6],[260,121.6],[151.3,126.3],[236.8,110.7],[174.9,145.4],[230.4,117.7],[202.4,143.2],[226.4,119.7],[212,158.9],[284.5,131.5],[206.2,164.3],[140,134.9],[159.6,133.2],[167.2,140.1],[180,149],[257.4,122.2]]},
{"name":"freedraw_scaled_rotated","objects":[{"type":"Path","version":"7.4.0","originX":"center","originY":"center","left":132,"top":79.9866,"width":144.024,"height":49.7569,"fill":null,"stroke":"#ff0000","strokeWidth":12,"strokeDashArray":null,"strokeLineCap":"round","strokeDashOffset":0,"strokeLineJoin":"round","strokeUniform":false,"strokeMiterLimit":10,"scaleX":1.6,"scaleY":0.7,"angle":30,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0,"path":[["M",59.988,79.988],["Q",60,80,63,83.09254949068153],["Q",66,86.18509898136307,69,89.08536872323407],["Q",72,91.98563846510507,75,94.51330373284421],["Q",78,97.04096900058335,81,99.03887181039038],["Q",84,101.0367746201974,87,102.38069505204354],["Q",90,103.72461548388965,93,104.3309950744955],["Q",96,104.93737466510136,99,104.7685116684749],["Q",102,104.59964867184843,105,103.66604217124524],["Q",108,102.73243567064205,111,101.09213279642003],["Q",114,99.45182992219803,117,97.20681676239846],["Q",120,94.9618036025989,123,92.2516642019536],["Q",126,89.5415248013083,129,86.5347625014025],["Q",132,83.52800020149668,135,80.411560919122],["Q",138,77.2951216367473,141,74.26277047225341],["Q",144,71.2304193077595,147,68.47069316960045],["Q",150,65.71096703144141,153,63.395452324371604],["Q",156,61.079937617301795,159,59.3526018307936],["Q",162,57.62526604428541,165,56.59350655132899],["Q",168,55.561747058372575,171,55.28971366699406],["Q",174,55.01768027561555,177,55.52228670451854],["Q",180,56.02689313342154,183,57.27676539887837],["Q",186,58.5266376643352,189,60.4440647625377],["Q",192,62.3614918607402,195,64.82725746162937],["Q",198,67.29302306251854,201,70.1538178037727],["L",204.012,73.02661254502685]]}],"inside":[[186.4,94],[210.2,106],[41.3,30.6],[183.1,90.6],[116.2,78],[53.3,48.2],[89.9,72.5],[65.7,58.6],[35,28.4],[112.6,78.9],[133.1,83],[216,110.3],[67.3,59.2],[143.6,81.5],[79.8,68.1],[169.4,86.7],[164.2,86.3],[189.4,96.4],[232.7,129],[72.7,63.7],[42.2,38.3],[32.5,21],[37.9,31.2],[232.1,130.3],[168.1,87.5],[60.9,55],[211.3,110.3],[44.3,34.5],[73.9,66.2],[85.4,72.9],[120.1,83.2],[224.3,123.2],[113.7,79.6],[52.5,49.9],[136.1,80],[189.2,92.4],[98.3,78.5],[153.6,82],[61.6,53.8],[39.8,30.9]],"outside":[[217.4,135.4],[151.2,70.9],[241,119],[204.7,118.9],[20.2,22.5],[176.1,100.6],[157.9,98.5],[65.5,43.8],[232,111.2],[144.3,96.7],[122.4,67.2],[113.3,66],[71.9,47.4],[22.6,33.7],[233.9,111.6],[25.9,11.3],[28.3,36.5],[219.9,138],[174.4,101.6],[235,113.5],[216.4,129.3],[52.8,27.9],[238.3,114.9],[101.2,65.2],[204.3,118],[149.1,98.5],[55.3,71],[134.4,70.3],[225.1,105.1],[89.9,88.4],[60.9,40.9],[195.7,112.1],[49.4,22.7],[71.3,78],[31.3,40.2],[25.6,10.5],[65.1,77.9],[233.3,110.6],[71.7,78.1],[52.9,69]]},
{"name":"rect","objects":[{"rx":0,"ry":0,"type":"Rect","version":"7.4.0","originX":"left","originY":"top","left":200,"top":150,"width":80,"height":50,"fill":"#eee","stroke":"#00f","strokeWidth":6,"strokeDashArray":null,"strokeLineCap":"butt","strokeDashOffset":0,"strokeLineJoin":"miter","strokeUniform":true,"strokeMiterLimit":4,"scaleX":1,"scaleY":1,"angle":0,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0}],"inside":[[203,202.8],[258.7,153.7],[203.7,187.3],[230.6,201.1],[231.6,152.5],[267.3,152],[278.1,204.4],[246.9,203.7],[248.2,151.7],[211.2,152],[283.7,162.3],[273.9,154.8],[235.3,153.6],[235.8,153.7],[258.1,154.2],[213.1,152.8],[202.9,187.8],[216.3,201.3],[259.8,202.8],[238.8,152.4],[260.3,152.6],[233.3,151.6],[249.5,153.1],[204.1,162.6],[264.3,152.5],[279.3,152.7],[206.9,202.9],[284.1,187],[204.1,182.2],[281.1,188.7],[232.2,154.9],[231.1,153],[279.1,203.2],[228.1,202.1],[240.1,153.6],[266,204.4],[269,152.2],[214.5,203.2],[281.4,198.6],[233.9,153]],"outside":[[289.7,184.2],[285.9,145.2],[277,147.9],[264.3,207.8],[290,204.9],[266.1,209.5],[225.2,207.5],[197.5,148.8],[258.7,148.5],[269.7,145.1],[240.2,209.2],[276,207.7],[251.5,207.9],[247.7,147.6],[262,210.9],[200.5,209.7],[198.2,156.2],[276.7,147.1],[255.1,210],[205.3,208.5],[198,169.9],[287.7,196.3],[289,187.4],[221.2,211],[286.9,147.8],[290.5,168.4],[269.5,145.2],[290.4,151.2],[195.9,164.7],[286.2,207.6],[288.5,207.2],[195.7,175],[276.9,208.1],[195.7,169.4],[243.4,146.6],[208.9,147.2],[209,146],[196.9,205.2],[274.4,209.5],[197.8,177.7]]},
{"name":"rect_scaled_rotated","objects":[{"rx":0,"ry":0,"type":"Rect","version":"7.4.0","originX":"left","originY":"top","left":260,"top":120,"width":80,"height":50,"fill":"#eee","stroke":"#00f","strokeWidth":6,"strokeDashArray":null,"strokeLineCap":"butt","strokeDashOffset":0,"strokeLineJoin":"miter","strokeUniform":true,"strokeMiterLimit":4,"scaleX":1.5,"scaleY":2,"angle":25,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0}],"inside":[[250.5,149.7],[253.5,145.3],[263.8,123.9],[276.5,239.8],[252.2,229.5],[222.3,211.6],[262.6,235.7],[325.1,265.2],[301.7,143.5],[303.7,143],[358.4,169.2],[364.8,183.9],[301.5,251.7],[247.8,153],[242.9,223.6],[299.2,252.5],[299.8,250.4],[230.6,193.8],[353.8,207.7],[266.8,237.2],[259.1,129.8],[261.9,123.8],[320.4,152.9],[267.3,238.4],[235,222.6],[366.6,177.9],[258,233.3],[240.2,171.6],[360.5,194.5],[342.1,232.1],[218.3,215.1],[319.3,149.7],[324.4,154.7],[363.9,171.6],[282.3,135.2],[282.8,133.4],[347,220.6],[250,229.3],[311.5,146.4],[325.4,155.8]],"outside":[[243.2,145.5],[334.5,266.4],[332.9,272.1],[336.4,264],[214.6,207.6],[360.2,161.6],[367.5,193.8],[232.6,227],[224.8,222.7],[269.9,121.5],[268.7,120.8],[358,161.4],[276.8,124.2],[335.9,265.1],[333.7,268.3],[303.8,259.1],[232.6,226.7],[235.6,165.4],[241.4,230.7],[261.9,116.3],[275.4,122.7],[334.3,265.4],[301.4,133.9],[361.3,210.2],[264.3,117.8],[247.4,235.5],[247.2,139.9],[349.3,157.6],[265.2,119.4],[340,154.2],[296.3,135],[295.5,132.1],[366.9,195.9],[349,157.3],[363.1,206.7],[366.5,166.9],[221.7,223.5],[258.1,120.2],[217.1,205.2],[246.4,235.3]]},
{"name":"circle","objects":[{"radius":30,"startAngle":0,"endAngle":360,"counterClockwise":false,"type":"Circle","version":"7.4.0","originX":"left","originY":"center","left":120,"top":260,"width":60,"height":60,"fill":"#eee","stroke":"rgba(255,0,0,0.5)","strokeWidth":8,"strokeDashArray":null,"strokeLineCap":"butt","strokeDashOffset":0,"strokeLineJoin":"miter","strokeUniform":false,"strokeMiterLimit":4,"scaleX":1,"scaleY":1,"angle":40,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0}],"inside":[[174.6,287.7],[159.4,254.1],[116.8,285.1],[175.6,279.8],[173.3,269.4],[137.1,254],[154.4,312.1],[175.8,290.1],[116,273.5],[152.6,313.5],[123.1,300.8],[118.9,292.6],[114.9,290.1],[170,263.4],[140.8,313.2],[164.6,304.3],[177.1,278.4],[116.3,275.9],[164.4,257],[124.7,302.9],[150.9,250.8],[174.1,267.3],[175.4,279.3],[177.4,288.4],[169.1,262],[176.3,276.3],[131.2,253.1],[137.1,253.3],[148.4,311.9],[173.1,269],[154.3,252.5],[170.2,298.9],[160,254.7],[159.6,310.3],[156.5,312.5],[135.7,251.6],[164.6,255.5],[128.3,306.7],[120.8,267.3],[116.6,277.9]],"outside":[[171.1,252.8],[108.2,277.2],[168,312.4],[125,313.8],[180.5,292.7],[111.1,265.8],[177,262.4],[116.8,256.5],[109.3,268.9],[177.5,261.3],[124.4,253],[142.7,244],[177,304.9],[169.4,250.8],[116.5,257.3],[181.8,295],[112.6,262.4],[114.2,303.6],[134.7,247.6],[107.2,283.8],[128.1,315.3],[166,252.2],[144.9,320.1],[122.7,254.8],[125.9,251],[110,273.6],[136.5,317.2],[111.6,265.3],[179.2,297.9],[116.8,306.7],[108.8,272.5],[181,268.5],[110.5,293.1],[134.5,316.3],[110.8,273],[163.8,250.8],[174.4,307.3],[113.1,268.4],[137.7,244.9],[157.4,246.7]]},
{"name":"polygon_moved","objects":[{"type":"Polygon","version":"7.4.0","originX":"center","originY":"center","left":400,"top":310,"width":80,"height":80,"fill":"#eee","stroke":"#0f0","strokeWidth":4,"strokeDashArray":null,"strokeLineCap":"butt","strokeDashOffset":0,"strokeLineJoin":"miter","strokeUniform":false,"strokeMiterLimit":4,"scaleX":1,"scaleY":1,"angle":0,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0,"points":[{"x":400,"y":250},{"x":470,"y":270},{"x":450,"y":330},{"x":420,"y":300},{"x":390,"y":320}]}],"inside":[[402.7,332.8],[370.9,270.5],[366.1,316.3],[427.1,325.8],[415.9,285.1],[368.6,284.9],[381.1,325.1],[407,332.8],[373.2,327.7],[420.1,345.4],[368.3,290.4],[360.8,336.7],[430.7,312.3],[409.7,339.2],[403.8,330.8],[368,296.4],[421.3,341.2],[368.3,297.8],[362.4,335],[383,276.4],[362.7,334.6],[394.2,279.2],[404.9,335.2],[362.3,334.9],[428.9,319.9],[416.5,342.7],[429.6,321],[427.7,319],[405.6,282.1],[379.4,323.7],[419,349.7],[402.2,331.4],[363.4,316],[425.6,288.5],[374.4,330],[362.6,338.7],[388.1,320.9],[421,287.3],[412.7,282],[366.3,334.9]],"outside":[[381.8,269.7],[398.9,338.4],[435.4,320.7],[380.7,332.6],[360.6,303.5],[428.6,345.8],[361.7,295.1],[364.3,342.8],[440.5,283.3],[362.5,277.1],[371.1,266.1],[445.9,288.3],[361.7,346.7],[357.3,317.4],[409.5,274.1],[386.8,327.3],[424.8,279.6],[363.8,286.6],[362,293.1],[389.8,269.2],[359.5,318.7],[363.7,267.3],[435.8,321.5],[391,326.5],[373.6,264.7],[379.9,268.2],[445.2,293.5],[357.3,312],[398.7,272.6],[396.4,272.7],[388.9,328.2],[405.1,343.3],[364.1,266.3],[417.9,354.4],[393,272.8],[354,341.5],[360.5,308.3],[363.9,342.4],[383.2,268.2],[388.9,271]]},
{"name":"line","objects":[{"type":"Line","version":"7.4.0","originX":"center","originY":"center","left":370,"top":85,"width":100,"height":50,"fill":"#000","stroke":"#000","strokeWidth":10,"strokeDashArray":null,"strokeLineCap":"butt","strokeDashOffset":0,"strokeLineJoin":"miter","strokeUniform":false,"strokeMiterLimit":4,"scaleX":1,"scaleY":1,"angle":0,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0,"x1":-50,"x2":50,"y1":-25,"y2":25}],"inside":[[349.5,73.4],[348.2,71.1],[327.3,65.5],[328.4,63],[405.9,102.4],[391.4,99.5],[412.6,104.2],[409.3,102.2],[371.4,81.9],[378,85.4],[396.4,98.9],[325.2,59.8],[392.2,99.7],[335,63.6],[348.6,77.3],[388.5,95.6],[400.7,99.2],[324.5,65.6],[389.3,94.6],[390.2,97.1],[411.6,107.1],[333.5,69.5],[338.5,67.1],[321.9,64.5],[340.4,69.3],[419.1,107],[373.8,86],[406.3,105.6],[363.5,77.9],[323.7,58.4],[365.1,79],[334.2,67.1],[365.5,86.2],[380.2,92],[373.5,85.8],[337.5,66.1],[394.2,97.3],[348,72.1],[406.5,102.4],[392.3,98]],"outside":[[317.4,58],[343,62.7],[413.7,115.3],[422.1,101.6],[383.6,81.9],[325.3,71.7],[328.9,74.1],[363.3,72.9],[339.1,77.4],[353.1,68.2],[350.3,83.1],[314.5,61.7],[415.2,116.2],[397.1,89.6],[369.9,75],[345.3,80.4],[313.4,62.8],[393.4,89.2],[346.5,81.9],[414.3,99],[333.7,74.7],[314.4,66.4],[336.8,57.2],[358.7,88],[362.9,91],[324.5,71.1],[380,82.1],[320.5,54],[324.4,53.7],[316,68.3],[349.5,65.6],[375.4,77.8],[355.3,70.4],[360.5,70.5],[328.7,53.4],[332.4,58.8],[381.9,99.3],[352.8,67.3],[375.6,97.3],[408.9,113.7]]},
{"name":"straight","objects":[{"type":"Path","version":"7.4.0","originX":"center","originY":"center","left":150,"top":100,"width":100.04,"height":0,"fill":null,"stroke":"#ff0000","strokeWidth":20,"strokeDashArray":null,"strokeLineCap":"round","strokeDashOffset":0,"strokeLineJoin":"round","strokeUniform":false,"strokeMiterLimit":10,"scaleX":1,"scaleY":1,"angle":0,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0,"path":[["M",99.98,100],["Q",100,100,102.5,100],["Q",105,100,107.5,100],["Q",110,100,112.5,100],["Q",115,100,117.5,100],["Q",120,100,122.5,100],["Q",125,100,127.5,100],["Q",130,100,132.5,100],["Q",135,100,137.5,100],["Q",140,100,142.5,100],["Q",145,100,147.5,100],["Q",150,100,152.5,100],["Q",155,100,157.5,100],["Q",160,100,162.5,100],["Q",165,100,167.5,100],["Q",170,100,172.5,100],["Q",175,100,177.5,100],["Q",180,100,182.5,100],["Q",185,100,187.5,100],["Q",190,100,192.5,100],["Q",195,100,197.5,100],["L",200.02,100]]}],"inside":[],"outside":[]},
{"name":"paint_then_eraser","objects":[{"type":"Path","version":"7.4.0","originX":"center","originY":"center","left":132,"top":79.9866,"width":144.024,"height":49.7569,"fill":null,"stroke":"#ff0000","strokeWidth":12,"strokeDashArray":null,"strokeLineCap":"round","strokeDashOffset":0,"strokeLineJoin":"round","strokeUniform":false,"strokeMiterLimit":10,"scaleX":1,"scaleY":1,"angle":0,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0,"path":[["M",59.988,79.988],["Q",60,80,63,83.09254949068153],["Q",66,86.18509898136307,69,89.08536872323407],["Q",72,91.98563846510507,75,94.51330373284421],["Q",78,97.04096900058335,81,99.03887181039038],["Q",84,101.0367746201974,87,102.38069505204354],["Q",90,103.72461548388965,93,104.3309950744955],["Q",96,104.93737466510136,99,104.7685116684749],["Q",102,104.59964867184843,105,103.66604217124524],["Q",108,102.73243567064205,111,101.09213279642003],["Q",114,99.45182992219803,117,97.20681676239846],["Q",120,94.9618036025989,123,92.2516642019536],["Q",126,89.5415248013083,129,86.5347625014025],["Q",132,83.52800020149668,135,80.411560919122],["Q",138,77.2951216367473,141,74.26277047225341],["Q",144,71.2304193077595,147,68.47069316960045],["Q",150,65.71096703144141,153,63.395452324371604],["Q",156,61.079937617301795,159,59.3526018307936],["Q",162,57.62526604428541,165,56.59350655132899],["Q",168,55.561747058372575,171,55.28971366699406],["Q",174,55.01768027561555,177,55.52228670451854],["Q",180,56.02689313342154,183,57.27676539887837],["Q",186,58.5266376643352,189,60.4440647625377],["Q",192,62.3614918607402,195,64.82725746162937],["Q",198,67.29302306251854,201,70.1538178037727],["L",204.012,73.02661254502685]]},{"type":"Path","version":"7.4.0","originX":"center","originY":"center","left":130.4295,"top":90,"width":0.891,"height":100.032,"fill":null,"stroke":"#ffffff","strokeWidth":16,"strokeDashArray":null,"strokeLineCap":"round","strokeDashOffset":0,"strokeLineJoin":"round","strokeUniform":false,"strokeMiterLimit":10,"scaleX":1,"scaleY":1,"angle":0,"flipX":false,"flipY":false,"opacity":1,"shadow":null,"visible":true,"backgroundColor":"","fillRule":"nonzero","paintFirst":"fill","globalCompositeOperation":"source-over","skewX":0,"skewY":0,"path":[["M",130.016,39.984],["Q",130,40,130.5,42.5],["Q",131,45,130.5,47.5],["Q",130,50,130.5,52.5],["Q",131,55,130.5,57.5],["Q",130,60,130.5,62.5],["Q",131,65,130.5,67.5],["Q",130,70,130.5,72.5],["Q",131,75,130.5,77.5],["Q",130,80,130.5,82.5],["Q",131,85,130.5,87.5],["Q",130,90,130.5,92.5],["Q",131,95,130.5,97.5],["Q",130,100,130.5,102.5],["Q",131,105,130.5,107.5],["Q",130,110,130.5,112.5],["Q",131,115,130.5,117.5],["Q",130,120,130.5,122.5],["Q",131,125,130.5,127.5],["Q",130,130,130.5,132.5],["Q",131,135,130.5,137.5],["L",129.984,140.016]]}],"inside":[[139,80.8],[179.4,54.1],[106.5,100.2],[77.7,98.8],[56.9,82],[185.6,59.8],[155.4,66.2],[144.1,76.7],[202.6,69.3],[116.5,96.1],[97.4,101.4],[120,89.8],[57.5,80.8],[112.8,105.2],[197.3,61.5],[204.5,75.2],[167.6,51.9],[139.9,69.6],[158.4,58.2],[60.1,78.8],[61.4,79.9],[110.2,104.2],[113.4,102.5],[181.8,53.1],[166.7,52.5],[58.7,79.8],[155.2,66],[153.6,58.4],[104.8,106.7],[68.5,83.9],[178.8,57.1],[159.6,57.3],[152.6,67.3],[81.2,104.4],[181.2,52.6],[87.5,100.1],[100.2,105.8],[96.7,106],[153.8,65],[169.2,52.8]],"outside":[[209,80.6],[121.1,107],[124.7,125.5],[147.6,53.9],[124.4,62.2],[136.3,84.5],[126.3,120.1],[95.6,112.6],[53.4,85.1],[163.1,69.5],[182.3,68.7],[82.8,110.6],[124.9,66.9],[62.5,71.8],[108.8,92.2],[134,54.7],[162.6,67.5],[151.5,77.5],[133.6,52.5],[186.5,69.2],[59.4,92.4],[197.7,54.5],[80.1,87.2],[84.6,91.9],[145.2,82.8],[152.1,53.8],[113.8,86],[145.9,59.2],[81.4,86.5],[69.6,104.1],[50.5,80.7],[136.7,116.7],[125.5,129],[135.4,97.7],[86.4,113.3],[64,71.1],[133.8,112.8],[84.1,111.7],[72.9,80.5],[64.7,71.9]]}
]
"""
)
