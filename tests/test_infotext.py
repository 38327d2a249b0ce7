"""Reading parameters back: A1111 infotext and our own PNGs."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from core.errors import BadImageError
from core.infotext import parse_infotext, png_parameters
from core.provenance import encode_png, parameters_text

A1111_TEXT = (
    "a lighthouse at dusk, (oil painting:1.2)\n"
    "second line of the prompt\n"
    "Negative prompt: blurry, text\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, "
    'Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2", '
    "Denoising strength: 0.6, Version: v1.10.1"
)


def test_a1111_text_becomes_request_fields():
    parsed = parse_infotext(A1111_TEXT)
    assert parsed.fields == {
        "prompt": "a lighthouse at dusk, (oil painting:1.2)\nsecond line of the prompt",
        "negative_prompt": "blurry, text",
        "num_inference_steps": 28,
        "scheduler": "DPM++ 2M Karras",
        "guidance_scale": 6.5,
        "seed": 1234567,
        "width": 512,
        "height": 768,
        "model": "v1-5-pruned-emaonly",
        "strength": 0.6,
    }
    assert parsed.settings["Lora hashes"] == "a: 1, b: 2"  # a quoted value keeps its commas
    assert parsed.skipped == ()


def test_unknown_sampler_and_bad_numbers_are_skipped_not_guessed():
    parsed = parse_infotext("a cat\nSteps: many, Sampler: Heun, CFG scale: 7, Seed: 3")
    assert parsed.fields == {"prompt": "a cat", "negative_prompt": "", "guidance_scale": 7.0, "seed": 3}
    assert set(parsed.skipped) == {"Steps", "Sampler"}


def test_plain_text_is_only_a_prompt():
    parsed = parse_infotext("just a prompt, with a comma: and a colon")
    assert parsed.fields == {"prompt": "just a prompt, with a comma: and a colon", "negative_prompt": ""}
    assert parsed.settings == {}


def test_our_own_text_round_trips_through_the_parser():
    parameters = {
        "task": "inpaint",
        "model": "sd15-inpaint",
        "prompt": 'a "quoted", prompt',
        "negative_prompt": "ugly",
        "num_inference_steps": 30,
        "guidance_scale": 7.5,
        "seed": 99,
        "scheduler": "Euler a",
        "strength": 0.75,
        "mask_blur": 4,
        "mask_grow": -2,
        "invert_mask": True,
        "padding": 32,
        "whole_image": False,
    }
    fields = parse_infotext(parameters_text(parameters)).fields
    assert fields == parameters


def test_png_with_our_chunk_gives_the_exact_parameters():
    parameters = {"task": "txt2img", "model": "sd-turbo", "prompt": "fox", "seed": 7, "width": 64, "height": 64}
    png = encode_png(Image.new("RGB", (8, 8)), parameters)
    parsed = png_parameters(png)
    assert parsed.source == "canvas-studio"
    assert parsed.fields == parameters


def test_png_with_a1111_text_is_parsed():
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_TEXT)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    parsed = png_parameters(buffer.getvalue())
    assert parsed.source == "a1111"
    assert parsed.fields["seed"] == 1234567


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a....", "not a PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "damaged"),
    ],
)
def test_files_without_parameters_are_refused_in_one_line(data, message):
    with pytest.raises(BadImageError, match=message):
        png_parameters(data)


def test_png_without_parameters_is_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    with pytest.raises(BadImageError, match="no generation parameters"):
        png_parameters(buffer.getvalue())
