"""Loading uploads (every refusal and every mode conversion) and fitting to a model's working resolution."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from skimage import data

from core.errors import BadImageError
from core.images import MODEL_BACKGROUND, load_image, normalize_mode, to_model_rgb
from core.region import Fit, plan_fit
from core.settings import ImageLimits

# --- helpers: files built byte by byte, so each test says exactly what is wrong with its input -------------------


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_header(width: int, height: int, bit_depth: int = 8, colour_type: int = 0, idat: bytes = b"") -> bytes:
    """A PNG declaring width x height; `idat` is the compressed pixel stream (may be too short on purpose)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def chunk_offset(png: bytes, kind: bytes) -> tuple[int, int]:
    """(start of the chunk's type field, payload length) of the first chunk of that type."""
    at = png.index(kind)
    return at, struct.unpack(">I", png[at - 4 : at])[0]


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(data.chelsea())  # 451x300 RGB photo


def refusal(source, limits: ImageLimits = ImageLimits()) -> str:
    with pytest.raises(BadImageError) as caught:
        load_image(source, limits)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- refusals -------------------------------------------------------------------------------------------------------


def test_refuses_a_zero_byte_upload_and_file(tmp_path):
    assert refusal(b"") == "unsupported image: the file is empty"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert refusal(empty) == "unsupported image: the file is empty"


def test_refuses_text_that_is_not_an_image():
    assert refusal(b"hello, this is a text file\n" * 20).startswith("unsupported image: not a JPEG, PNG, WebP")


def test_refuses_svg_even_when_named_png_and_never_shows_the_path(tmp_path):
    svg = tmp_path / "secret-folder" / "drawing.png"
    svg.parent.mkdir()
    svg.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>')
    message = refusal(svg)
    assert "SVG is not supported" in message
    assert "secret-folder" not in message and str(tmp_path) not in message
    assert "SVG" in refusal(b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="5"/></svg>')


def test_a_missing_file_is_refused_without_its_path(tmp_path):
    message = refusal(tmp_path / "nowhere" / "photo.png")
    assert "cannot read" in message and "nowhere" not in message


def test_refuses_truncated_png_and_jpeg(astronaut):
    png, jpeg = encode(astronaut, "PNG"), encode(astronaut, "JPEG", quality=90)
    assert refusal(png[: len(png) // 2]) == "image file is truncated or corrupt"
    assert refusal(jpeg[: len(jpeg) // 2]) == "image file is truncated or corrupt"
    # The untruncated files load, so the refusal is about the truncation.
    assert load_image(png).size == load_image(jpeg).size == (512, 512)


def test_refuses_a_png_with_one_flipped_crc_byte(astronaut):
    png = encode(astronaut, "PNG")
    at, length = chunk_offset(png, b"IDAT")
    corrupt = bytearray(png)
    corrupt[at + 4 + length] ^= 0x01  # first byte of the IDAT CRC: the pixels themselves still decode
    assert refusal(bytes(corrupt)) == "image file is truncated or corrupt"


def test_refuses_a_30000_square_header_bomb_before_decoding():
    # A real 8x8 PNG whose IHDR is patched to claim 30000x30000 (CRC fixed up, so only the size is wrong).
    png = bytearray(encode(Image.new("L", (8, 8))))
    at, _ = chunk_offset(bytes(png), b"IHDR")
    png[at + 4 : at + 12] = struct.pack(">II", 30000, 30000)
    png[at + 17 : at + 21] = struct.pack(">I", zlib.crc32(bytes(png[at : at + 17])))
    message = refusal(bytes(png))
    # Had it been decoded, the 8x8 pixel stream would have been reported as truncated instead.
    assert "900 MP" in message and "limit is 48 MP" in message


def test_refuses_a_header_over_our_pixel_limit_naming_its_size():
    # 8000x7000 = 56 MP: over our 48 MP default, under Pillow's own threshold; the pixel data is absent entirely.
    assert refusal(png_with_header(8000, 7000)) == "image is 8000x7000 (56 MP); the limit is 48 MP"


def test_refuses_a_small_file_that_would_decode_to_9500_square():
    # A genuine 1-bit 9500x9500 PNG of zeros, streamed through zlib row by row: ~10 KB on disk, 90 MP decoded.
    row = b"\x00" * (1 + (9500 + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(9500)) + compressor.flush()
    bomb = png_with_header(9500, 9500, bit_depth=1, colour_type=0, idat=idat)
    assert len(bomb) < 100_000
    assert "90 MP" in refusal(bomb)
    # Even with our own limits raised out of the way, Pillow's DecompressionBombWarning (89.5 MP) is an error here.
    generous = ImageLimits(max_pixels=200_000_000, max_side=20_000)
    assert "too large to decode safely" in refusal(bomb, generous)


def test_concurrent_loads_refuse_bombs_and_leave_the_warning_filters_alone():
    bomb = png_with_header(9500, 9500, bit_depth=1, colour_type=0)  # header only: refused before any decoding
    generous = ImageLimits(max_pixels=200_000_000, max_side=20_000)
    filters_before = list(warnings.filters)

    def load_many(_: int) -> list[str]:
        return [refusal(bomb, generous) for _ in range(20)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        messages = [message for batch in pool.map(load_many, range(8)) for message in batch]
    assert len(messages) == 160 and all("90 MP" in message for message in messages)
    assert warnings.filters == filters_before


def test_refuses_absurd_sides_and_aspect_ratios():
    assert "per side" in refusal(encode(Image.new("L", (100_000, 1))))
    assert "at least 8 px" in refusal(encode(Image.new("RGB", (1, 1))))
    assert "aspect ratio 20:1" in refusal(encode(Image.new("RGB", (2000, 100))))
    assert load_image(encode(Image.new("RGB", (1000, 100)))).size == (1000, 100)  # 10:1 is allowed


@pytest.mark.parametrize("compressed_text", ["zTXt", "iTXt"])
def test_refuses_a_png_with_a_huge_text_chunk(compressed_text):
    info = PngImagePlugin.PngInfo()
    if compressed_text == "zTXt":
        info.add_text("comment", "x" * 5_000_000, zip=True)
    else:
        info.add_itxt("comment", "x" * 5_000_000, zip=True)
    png = encode(Image.new("RGB", (16, 16)), pnginfo=info)
    assert compressed_text.encode() in png and len(png) < 20_000
    assert refusal(png) == "image metadata is too large (an oversized PNG text chunk)"


# --- conversions ------------------------------------------------------------------------------------------------


def test_a_real_photo_loads_exactly_from_bytes_and_from_a_path(astronaut, tmp_path):
    path = tmp_path / "astronaut.png"
    path.write_bytes(encode(astronaut))
    for source in (encode(astronaut), path, str(path)):
        loaded = load_image(source)
        assert loaded.mode == "RGB"
        assert np.array_equal(np.asarray(loaded), np.asarray(astronaut))


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (64, 64), (255, 0, 0, 0))  # pure cyan ink
    cmyk.paste((0, 0, 0, 255), (0, 0, 32, 64))  # black ink on the left half
    loaded = load_image(encode(cmyk, "JPEG", quality=95))
    assert loaded.mode == "RGB"
    cyan, black = np.asarray(loaded)[32, 48].astype(int), np.asarray(loaded)[32, 8].astype(int)
    assert cyan[0] < 20 and cyan[1] > 235 and cyan[2] > 235
    assert black.max() < 20


def test_palette_with_transparency_keeps_its_alpha_and_without_is_rgb():
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 16, 32))
    transparent = load_image(encode(palette, transparency=0))
    assert transparent.mode == "RGBA"
    pixels = np.asarray(transparent)
    assert (pixels[:, :16, 3] == 0).all() and (pixels[:, 16:] == [255, 0, 0, 255]).all()
    opaque = load_image(encode(palette))
    assert opaque.mode == "RGB" and tuple(np.asarray(opaque)[0, 20]) == (255, 0, 0)


def test_grey_with_alpha_keeps_partial_alpha_and_drops_full_opacity():
    grey = np.full((32, 32), 200, np.uint8)
    alpha = np.full((32, 32), 255, np.uint8)
    alpha[:8] = 64
    loaded = load_image(encode(Image.fromarray(np.dstack([grey, alpha]), "LA")))
    assert loaded.mode == "RGBA"
    assert np.array_equal(np.asarray(loaded)[:, :, 3], alpha)
    assert (np.asarray(loaded)[:, :, :3] == 200).all()
    assert load_image(encode(Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA"))).mode == "RGB"


def test_one_bit_image_becomes_black_and_white_rgb():
    bits = Image.new("1", (40, 40), 0)
    bits.paste(1, (0, 0, 20, 40))
    pixels = np.asarray(load_image(encode(bits)))
    assert (pixels[:, :20] == 255).all() and (pixels[:, 20:] == 0).all()


def test_sixteen_bit_grey_png_is_scaled_not_clipped():
    values = np.zeros((16, 16), np.uint16)
    values[0], values[1], values[2], values[3] = 65535, 32768, 257, 1000
    png = encode(Image.fromarray(values))
    assert Image.open(io.BytesIO(png)).mode.startswith("I;16")  # really a 16-bit file
    pixels = np.asarray(load_image(png))[:, :, 0]
    assert pixels[0, 0] == 255 and pixels[1, 0] == 128 and pixels[2, 0] == 1 and pixels[3, 0] == 4
    assert pixels[4, 0] == 0


def test_sixteen_bit_rgb_png_is_scaled():
    rgb16 = np.zeros((16, 16, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 40000, 5000  # BGR order for OpenCV
    ok, png = cv2.imencode(".png", rgb16)
    assert ok
    pixel = np.asarray(load_image(png.tobytes()))[0, 0].astype(int)
    assert list(pixel) == pytest.approx([round(5000 / 257), round(40000 / 257), 255], abs=1)


def test_float_tiff_in_unit_range_is_scaled_and_out_of_range_is_stretched():
    ramp = np.linspace(0, 1, 64, dtype=np.float32)[None, :].repeat(16, axis=0)
    pixels = np.asarray(load_image(encode(Image.fromarray(ramp), "TIFF")))[0, :, 0]
    assert pixels[0] == 0 and pixels[-1] == 255 and abs(int(pixels[32]) - round(32 / 63 * 255)) <= 1
    wide = np.asarray(load_image(encode(Image.fromarray(ramp * 4 - 1), "TIFF")))[0, :, 0]
    assert np.array_equal(wide, pixels)  # min-max: the same ramp, not clipped at 0 and 1
    broken = ramp.copy()
    broken[0, 0] = np.nan
    assert "not numbers" in refusal(encode(Image.fromarray(broken), "TIFF"))


def test_32_bit_integer_tiff_outside_16_bit_is_stretched():
    ramp = np.linspace(-100_000, 900_000, 64).astype(np.int32)[None, :].repeat(16, axis=0)
    pixels = np.asarray(load_image(encode(Image.fromarray(ramp), "TIFF")))[0, :, 0]
    assert pixels[0] == 0 and pixels[-1] == 255 and np.all(np.diff(pixels.astype(int)) >= 0)


def test_rgba_keeps_partial_alpha_and_fully_opaque_rgba_becomes_rgb(astronaut):
    rgba = astronaut.convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[100:200, 100:200] = 0
    alpha[300:310] = 128
    rgba.putalpha(Image.fromarray(alpha))
    loaded = load_image(encode(rgba))
    assert loaded.mode == "RGBA" and np.array_equal(np.asarray(loaded), np.asarray(rgba))
    opaque = load_image(encode(astronaut.convert("RGBA")))
    assert opaque.mode == "RGB" and np.array_equal(np.asarray(opaque), np.asarray(astronaut))


def test_exif_rotated_jpeg_is_upright_with_sides_swapped():
    stored = np.zeros((200, 300, 3), np.uint8)  # landscape as stored by the camera
    stored[:50, :50] = (255, 0, 0)  # red marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: display rotated 90 degrees clockwise
    loaded = load_image(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()))
    assert loaded.size == (200, 300)
    pixels = np.asarray(loaded).astype(int)
    assert pixels[10, 190, 0] > 200 and pixels[10, 190, 1] < 60  # the marker is now top-right
    assert pixels[10, 10].max() < 60 and pixels[290, 10].max() < 60


def animation(format: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((250, 0, 0), (0, 0, 250), (0, 250, 0))]
    options = {"lossless": True} if format == "WEBP" else {}
    return encode(frames[0], format, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)


@pytest.mark.parametrize("format", ["GIF", "WEBP"])
def test_animated_files_give_their_first_frame_deterministically(format):
    animated = animation(format)
    assert Image.open(io.BytesIO(animated)).n_frames == 3
    first, again = load_image(animated), load_image(animated)
    assert first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    red = np.asarray(first)[16, 16].astype(int)
    assert red[0] > 200 and red[1] < 30 and red[2] < 30


def test_normalize_mode_handles_modes_given_as_images():
    assert normalize_mode(Image.new("L", (8, 8), 7)).getpixel((0, 0)) == (7, 7, 7)
    la = normalize_mode(Image.new("LA", (8, 8), (9, 0)))
    assert la.mode == "RGBA" and la.getpixel((0, 0))[3] == 0


def test_to_model_rgb_composites_over_mid_grey_and_leaves_rgb_alone(astronaut):
    assert to_model_rgb(astronaut) is astronaut
    rgba = astronaut.convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:100] = 0
    alpha[100:200] = 128
    rgba.putalpha(Image.fromarray(alpha))
    model = np.asarray(to_model_rgb(rgba)).astype(int)
    photo = np.asarray(astronaut).astype(int)
    assert to_model_rgb(rgba).mode == "RGB"
    assert (model[:100] == MODEL_BACKGROUND).all()
    assert np.array_equal(model[200:], photo[200:])
    expected_half = (photo[100:200] * 128 + np.array(MODEL_BACKGROUND) * 127) / 255
    assert np.abs(model[100:200] - expected_half).max() <= 1


# --- fitting to a working resolution ------------------------------------------------------------------------------


def test_native_fit_only_pads_to_the_multiple():
    fit = plan_fit((601, 403), 0, 8)
    assert fit == Fit(original_size=(601, 403), scaled_size=(601, 403), padded_size=(608, 408))
    assert plan_fit((600, 400), 0, 1).padded_size == (600, 400)


def test_identity_fit_leaves_pixels_untouched(coffee):
    fit = plan_fit(coffee.size, 0, 1)
    assert np.array_equal(np.asarray(fit.restore(fit.apply(coffee))), np.asarray(coffee))


@pytest.mark.parametrize(
    ("size", "resolution", "multiple"),
    [((600, 400), 512, 8), ((128, 300), 768, 8), ((4000, 3000), 1024, 64), ((97, 13), 512, 8)],
)
def test_fit_keeps_area_and_aspect_and_pads_to_the_multiple(size, resolution, multiple):
    fit = plan_fit(size, resolution, multiple)
    (width, height), (scaled_width, scaled_height) = size, fit.scaled_size
    assert abs(scaled_width * scaled_height / resolution**2 - 1) < 0.03
    assert abs((scaled_width / scaled_height) / (width / height) - 1) < 0.05
    padded_width, padded_height = fit.padded_size
    assert padded_width % multiple == 0 and padded_height % multiple == 0
    assert 0 <= padded_width - scaled_width < multiple and 0 <= padded_height - scaled_height < multiple


def test_fit_pads_by_replicating_edges_and_restores_the_exact_size(coffee):
    fit = plan_fit(coffee.size, 500, 64)
    padded = np.asarray(fit.apply(coffee))
    width, height = fit.scaled_size
    assert padded.shape[:2] == (fit.padded_size[1], fit.padded_size[0])
    assert fit.padded_size != fit.scaled_size
    assert (padded[:height, width:] == padded[:height, width - 1 : width]).all()
    assert (padded[height:, :] == padded[height - 1 : height, :]).all()
    restored = fit.restore(Image.fromarray(padded))
    assert restored.size == coffee.size
    difference = np.abs(np.asarray(restored).astype(int) - np.asarray(coffee).astype(int))
    assert difference.mean() < 8  # a down-and-up resize of a real photo, not a shifted or stretched one


def test_fit_keeps_masks_binary_in_both_directions():
    mask = np.zeros((300, 451), np.uint8)
    cv2.circle(mask, (200, 150), 60, 255, -1)
    fit = plan_fit((451, 300), 512, 8)
    model_mask = fit.apply(Image.fromarray(mask), is_mask=True)
    assert set(np.unique(np.asarray(model_mask))) == {0, 255}
    back = np.asarray(fit.restore(model_mask, is_mask=True))
    assert back.shape == mask.shape and set(np.unique(back)) == {0, 255}
    overlap = np.logical_and(back > 0, mask > 0).sum() / np.logical_or(back > 0, mask > 0).sum()
    assert overlap > 0.97


def test_fit_refuses_images_of_the_wrong_size(coffee):
    fit = plan_fit(coffee.size, 512, 8)
    with pytest.raises(ValueError):
        fit.apply(coffee.resize((100, 100)))
    with pytest.raises(ValueError):
        fit.restore(coffee)


def test_many_fits_restore_their_original_size():
    rng = np.random.default_rng(0)
    for _ in range(30):
        size = (int(rng.integers(8, 2000)), int(rng.integers(8, 2000)))
        fit = plan_fit(size, int(rng.choice([0, 512, 768, 1024])), int(rng.choice([1, 8, 64])))
        assert fit.restore(Image.new("L", fit.padded_size)).size == size
