"""Masks: from files, the mask operations, the crop box and the paste-back (the editor's strokes: test_strokes.py)."""

from __future__ import annotations

import io
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
    mask_from_image,
    require_not_empty,
    threshold,
)
from core.region import crop_box, paste_back


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


def test_a_mask_too_small_for_its_feather_is_refused_in_one_line(coffee):
    """One painted pixel under a 60 px feather blurs to nothing: the run says so instead of failing inside."""
    from core.requests import InpaintRequest
    from core.runner import Studio

    mask = Image.new("L", coffee.size, 0)
    mask.putpixel((300, 200), 255)
    studio = Studio.from_settings()
    request = InpaintRequest(model="opencv-telea", image=coffee, mask=mask, mask_blur=60)
    with pytest.raises(BadMaskError, match="too small for a feather of 60 px"):
        studio.run(studio.prepare(request))
    # The same pixel with a feather it survives runs, and changes nothing far from that pixel.
    result = studio.run(studio.prepare(InpaintRequest(model="opencv-telea", image=coffee, mask=mask, mask_blur=2)))
    changed = np.argwhere(np.asarray(result.images[0], dtype=int) != np.asarray(coffee, dtype=int))
    assert not changed.size or (abs(changed[:, 0] - 200).max() <= 12 and abs(changed[:, 1] - 300).max() <= 12)
