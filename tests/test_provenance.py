"""Output PNGs carry their parameters (A1111 text for people and tools, exact JSON for re-runs),
keep the pixels exactly, and encode deterministically."""

from __future__ import annotations

import io
import json
import math
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import core
from core.errors import BadImageError
from core.provenance import encode_png, parameters_text, read_parameters
from core.requests import GenerateRequest, InpaintRequest

GENERATE_PARAMETERS = {
    **GenerateRequest(
        model="sd-turbo", prompt="a lighthouse at dusk, oil painting", negative_prompt="blurry", num_inference_steps=20,
        guidance_scale=7.0, seed=1, scheduler="Euler a", width=512, height=512,
    ).parameters(),
    "model_source": "stabilityai/sd-turbo@main",
    "filtered": [False],
}  # fmt: skip
INPAINT_PARAMETERS = {
    **InpaintRequest(model="sd-inpaint", prompt="a red door", seed=42, guidance_scale=6.5, strength=0.75).parameters(),
    "image_digest": "ab" * 32,
    "mask_digest": "cd" * 32,
}


def expected_record(parameters):
    return {**parameters, "app": "canvas-studio", "version": core.__version__}


def rgba_photo(photo: Image.Image) -> Image.Image:
    alpha = Image.linear_gradient("L").resize(photo.size)
    image = photo.convert("RGBA")
    image.putalpha(alpha)
    return image


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_round_trip_keeps_parameters_and_exact_pixels(astronaut, mode):
    image = astronaut if mode == "RGB" else rgba_photo(astronaut)
    png = encode_png(image, GENERATE_PARAMETERS)
    assert read_parameters(png) == expected_record(GENERATE_PARAMETERS)
    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG" and decoded.mode == mode and decoded.size == image.size
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_encoding_is_deterministic(coffee):
    first = encode_png(coffee, INPAINT_PARAMETERS)
    assert encode_png(coffee.copy(), dict(reversed(list(INPAINT_PARAMETERS.items())))) == first
    assert encode_png(coffee, {**INPAINT_PARAMETERS, "seed": 43}) != first


def test_pillow_reads_the_a1111_text_and_the_exact_json(coffee):
    png = encode_png(coffee, GENERATE_PARAMETERS)
    decoded = Image.open(io.BytesIO(png))
    text = decoded.text["parameters"]
    assert text == parameters_text(GENERATE_PARAMETERS)
    prompt, negative, settings = text.split("\n")
    assert prompt == "a lighthouse at dusk, oil painting"
    assert negative == "Negative prompt: blurry"
    assert settings.startswith("Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: sd-turbo, ")
    assert settings.endswith(f"Version: canvas-studio {core.__version__}")
    assert json.loads(decoded.text["canvas-studio"]) == expected_record(GENERATE_PARAMETERS)
    Image.open(io.BytesIO(png)).verify()  # every chunk's CRC is right


def test_the_text_chunk_sits_before_the_image_data(coffee):
    png = encode_png(coffee, GENERATE_PARAMETERS)
    kinds = chunk_kinds(png)
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert kinds.index(b"tEXt") < kinds.index(b"IDAT") and kinds.index(b"iTXt") < kinds.index(b"IDAT")


def test_inpaint_settings_use_a1111_labels():
    text = parameters_text(INPAINT_PARAMETERS)
    prompt, settings = text.split("\n")  # an empty negative prompt is left out, as A1111 does
    assert prompt == "a red door"
    pairs = settings.split(", ")
    for expected in ("Seed: 42", "CFG scale: 6.5", "Denoising strength: 0.75", "Mask blur: 4", "Masked area padding: 32",
                     "Inpaint area: Only masked", "Mask mode: Inpaint masked", "Image digest: " + "ab" * 32):  # fmt: skip
        assert expected in pairs
    assert "Steps" not in [pair.split(": ")[0] for pair in pairs]  # unset (None): not written


def test_values_that_would_break_the_settings_line_are_quoted():
    text = parameters_text({"prompt": "p", "scheduler": 'odd, "name": x', "seed": 5})
    assert text.split("\n")[1].startswith('Sampler: "odd, \\"name\\": x", Seed: 5')


def test_prompts_beyond_latin_1_survive_both_chunks(coffee):
    parameters = {**GENERATE_PARAMETERS, "prompt": "灯台、夕暮れ 🌅", "negative_prompt": "ぼやけ"}
    png = encode_png(coffee, parameters)
    assert read_parameters(png)["prompt"] == "灯台、夕暮れ 🌅"
    assert Image.open(io.BytesIO(png)).text["parameters"].startswith("灯台、夕暮れ 🌅\nNegative prompt: ぼやけ\n")


def test_read_parameters_from_a_path(tmp_path, coffee):
    path = tmp_path / "out.png"
    path.write_bytes(encode_png(coffee, INPAINT_PARAMETERS))
    assert read_parameters(path) == read_parameters(str(path)) == expected_record(INPAINT_PARAMETERS)


def plain_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_png_without_our_chunk_is_refused(coffee):
    with pytest.raises(BadImageError, match="carries no Canvas Studio parameters"):
        read_parameters(plain_png(coffee))


def test_a1111_text_alone_is_not_taken_for_our_parameters(coffee):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Seed: 1")
    buffer = io.BytesIO()
    coffee.save(buffer, "PNG", pnginfo=info)
    with pytest.raises(BadImageError, match="carries no Canvas Studio parameters"):
        read_parameters(buffer.getvalue())


@pytest.mark.parametrize("data", [b"", b"hello", b"\xff\xd8\xff\xe0 a jpeg header"], ids=["empty", "text", "jpeg"])
def test_non_png_input_is_refused(data):
    with pytest.raises(BadImageError, match="carries no Canvas Studio parameters"):
        read_parameters(data)


def test_a_missing_file_is_refused_without_its_path(tmp_path):
    with pytest.raises(BadImageError) as raised:
        read_parameters(tmp_path / "nowhere.png")
    assert str(tmp_path) not in str(raised.value) and "nowhere" not in str(raised.value)


def test_a_damaged_parameters_chunk_is_refused(coffee):
    png = bytearray(encode_png(coffee, GENERATE_PARAMETERS))
    start = png.index(b"canvas-studio\0")
    png[start + 30] ^= 0x01  # inside the JSON: the chunk's CRC no longer matches
    with pytest.raises(BadImageError, match="damaged"):
        read_parameters(bytes(png))


def test_a_compressed_itxt_chunk_is_read(coffee):
    # Other tools may rewrite our chunk compressed; its content is still ours.
    record = expected_record(GENERATE_PARAMETERS)
    body = b"canvas-studio\0\x01\x00\0\0" + zlib.compress(json.dumps(record).encode())
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    plain = plain_png(coffee)
    assert read_parameters(plain[:33] + chunk + plain[33:]) == record


@pytest.mark.parametrize("bad", [{"seed": math.nan}, {"app": "other"}, {"version": "9"}, {"image": object()}])
def test_parameters_that_cannot_be_recorded_exactly_are_refused(coffee, bad):
    with pytest.raises(ValueError):
        encode_png(coffee, {**GENERATE_PARAMETERS, **bad})


def test_only_rgb_and_rgba_are_encoded(coffee):
    with pytest.raises(ValueError):
        encode_png(coffee.convert("L"), GENERATE_PARAMETERS)


def chunk_kinds(png: bytes) -> list[bytes]:
    kinds, offset = [], 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kinds.append(png[offset + 4 : offset + 8])
        offset += length + 12
    return kinds
