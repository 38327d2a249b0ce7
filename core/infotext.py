"""Reading generation parameters back: AUTOMATIC1111's `parameters` text ("infotext") and PNGs.

A1111 writes, and Canvas Studio writes too (core/provenance.py), a text of the form

    a lighthouse at dusk, oil painting
    Negative prompt: blurry, text
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, Model: sd15, ...

`parse_infotext` turns such a text into our request fields (names of core/requests.py) plus every
setting it saw; `png_parameters` reads a PNG's chunks (never its pixels): our exact JSON chunk
when it is there, else the A1111 text. A text that is not infotext gives no fields rather than
wrong ones; values that do not parse are left out and listed, never guessed.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from core.errors import BadImageError
from core.provenance import read_parameters

MAX_INFOTEXT_CHARS = 64 * 1024  # A1111 texts are a few hundred characters; longer is not infotext

# "Label: value" pairs of the settings line; a value is a JSON string in quotes or runs to the next comma.
_SETTING = re.compile(r'\s*(\w[\w \-/+.()]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"(\d+)\s*x\s*(\d+)")
_NEGATIVE = "Negative prompt:"

# A1111 sampler names (and schedule types) -> our scheduler names (core.requests.SCHEDULERS).
_SAMPLERS = {
    "euler": "Euler",
    "euler a": "Euler a",
    "dpm++ 2m": "DPM++ 2M",
    "dpm++ 2m karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "unipc": "UniPC",
    "lcm": "LCM",
    "pndm": "PNDM",
    "plms": "PNDM",  # diffusers' PNDM is A1111's PLMS
}
_CHOICES = {  # the words provenance.parameters_text writes for booleans
    "Inpaint not masked": ("invert_mask", True),
    "Inpaint masked": ("invert_mask", False),
    "Whole picture": ("whole_image", True),
    "Only masked": ("whole_image", False),
}


@dataclass(frozen=True)
class Infotext:
    """What a parameters text says, as core request fields, plus everything it held."""

    fields: dict[str, Any]  # prompt, negative_prompt, num_inference_steps, guidance_scale, seed, width, height, ...
    settings: dict[str, str] = field(default_factory=dict)  # every "Label: value" pair, as text
    skipped: tuple[str, ...] = ()  # labels whose value did not parse (left out of `fields`)
    source: str = "a1111"  # "canvas-studio" (our exact JSON) or "a1111" (parsed text)

    @property
    def model(self) -> str | None:
        """The model the text names: our catalogue id, or an A1111 checkpoint name (may not be ours)."""
        return self.fields.get("model")


def parse_infotext(text: str) -> Infotext:
    """Our request fields from an A1111-style parameters text. Never raises on odd text."""
    text = (text or "").replace("\r\n", "\n").strip()[:MAX_INFOTEXT_CHARS]
    lines = text.split("\n") if text else []
    settings: dict[str, str] = {}
    if lines and len(_SETTING.findall(lines[-1])) >= 3:  # A1111's own test: a settings line has 3+ pairs
        settings = {label.strip(): _unquote(value.strip()) for label, value in _SETTING.findall(lines.pop())}
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith(_NEGATIVE):
            in_negative, line = True, line[len(_NEGATIVE) :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    fields: dict[str, Any] = {
        "prompt": "\n".join(prompt_lines).strip(),
        "negative_prompt": "\n".join(negative_lines).strip(),
    }
    skipped = []
    for label, value in settings.items():
        try:
            fields.update(_field(label, value, settings))
        except ValueError:
            skipped.append(label)
    return Infotext(fields, settings, tuple(skipped))


def png_parameters(data: bytes) -> Infotext:
    """The parameters a PNG carries: our exact JSON, else an A1111 `parameters` text.

    Raises BadImageError (one line a user can act on) when the file is not a PNG or carries neither."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise BadImageError("this file is not a PNG; only PNGs carry generation parameters")
    try:
        exact = read_parameters(data)
    except BadImageError:
        exact = None
    if exact is not None:
        fields = {name: value for name, value in exact.items() if name not in ("app", "version")}
        text = _a1111_text(data)
        return Infotext(fields, parse_infotext(text).settings if text else {}, (), "canvas-studio")
    text = _a1111_text(data)
    if not text:
        raise BadImageError("this PNG carries no generation parameters (no Canvas Studio or A1111 'parameters' text)")
    parsed = parse_infotext(text)
    if not parsed.settings and not parsed.fields["prompt"]:
        raise BadImageError("this PNG's 'parameters' text holds no settings we can read")
    return parsed


def _a1111_text(data: bytes) -> str | None:
    """The `parameters` tEXt/iTXt chunk (Pillow reads chunks up to the image data, not the pixels)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            value = getattr(image, "text", {}).get("parameters")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise BadImageError("this PNG is damaged; its parameters cannot be read") from None
    return value if isinstance(value, str) else None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _field(label: str, value: str, settings: dict[str, str]) -> dict[str, Any]:
    """One setting as request fields ({} for settings with no field of ours). ValueError if unparsable."""
    name = label.lower()
    if name == "steps":
        return {"num_inference_steps": int(value)}
    if name == "cfg scale":
        return {"guidance_scale": float(value)}
    if name == "seed":
        return {"seed": int(value)}
    if name == "size":
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(value)
        return {"width": int(match[1]), "height": int(match[2])}
    if name == "sampler":
        schedule = settings.get("Schedule type", "").strip().lower()
        sampler = value.strip().lower()
        if schedule == "karras" and f"{sampler} karras" in _SAMPLERS:
            sampler = f"{sampler} karras"
        if sampler not in _SAMPLERS:
            raise ValueError(value)
        return {"scheduler": _SAMPLERS[sampler]}
    if name == "denoising strength":
        return {"strength": float(value)}
    if name == "model":
        return {"model": value.strip()}
    if name == "batch size":
        return {"num_images": int(value)}
    if name in ("mask blur", "mask grow", "masked area padding"):
        target = {"mask blur": "mask_blur", "mask grow": "mask_grow", "masked area padding": "padding"}[name]
        return {target: int(value)}
    if name == "task":
        return {"task": value.strip()}
    if value in _CHOICES:
        target, flag = _CHOICES[value]
        return {target: flag}
    return {}


__all__ = ["Infotext", "parse_infotext", "png_parameters"]
