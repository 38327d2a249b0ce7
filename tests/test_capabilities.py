"""Engines declare what they read, once (core/engines/__init__.py), and requests are defined once
(core/requests.py): cache keys, PNG parameters, the API schema and the CLI all follow from the two."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from core.catalogue import Catalogue
from core.errors import BadParameterError
from core.pool import ModelPool
from core.requests import GenerateRequest, InpaintRequest
from core.runner import Studio

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def studio() -> Studio:
    return Studio(Catalogue.load(), ModelPool(1), None)  # keys need no model and no store


def _inpaint(model: str) -> InpaintRequest:
    image = Image.new("RGB", (96, 64), (90, 120, 150))
    mask = Image.new("L", image.size, 0)
    mask.paste(255, (30, 20, 60, 40))
    return InpaintRequest(
        model=model, image=image, mask=mask, prompt="a red door", negative_prompt="text", num_inference_steps=20,
        guidance_scale=6.0, seed=99, scheduler="DDIM", strength=0.8,
    )  # fmt: skip


def _generate(model: str) -> GenerateRequest:
    return GenerateRequest(
        model=model, prompt="a lighthouse", negative_prompt="fog", num_inference_steps=4, guidance_scale=1.5,
        seed=7, scheduler="Euler a", width=512, height=512, num_images=1,
    )  # fmt: skip


CHANGES = {
    "prompt": "a blue door",
    "negative_prompt": "blur",
    "num_inference_steps": 21,
    "guidance_scale": 6.5,
    "seed": 100,
    "scheduler": "Euler",
    "strength": 0.9,
    "mask_blur": 5,
    "mask_grow": 1,
    "invert_mask": True,
    "padding": 33,
    "whole_image": True,
    "width": 576,
    "height": 576,
    "num_images": 2,
}
SAMPLING = {"prompt", "negative_prompt", "num_inference_steps", "guidance_scale", "seed", "scheduler", "strength"}

# What each engine's output does NOT depend on, written out by hand from what its module sends.
IGNORED = [
    ("opencv-telea", "inpaint", SAMPLING),
    ("lama", "inpaint", SAMPLING),
    ("flux-kontext-hosted", "inpaint", {"seed", "scheduler", "strength"}),  # image_to_image gets neither
    ("sd15-inpainting", "inpaint", set()),
    ("flux-schnell-hosted", "txt2img", {"scheduler"}),
    ("sd-turbo", "txt2img", set()),
]


@pytest.mark.parametrize(("model", "task", "ignored"), IGNORED, ids=[model for model, _, _ in IGNORED])
def test_a_cache_key_covers_exactly_what_its_engine_reads(studio, model, task, ignored):
    """Compare re-running and re-storing the same OpenCV removal for every prompt typed was the bug."""
    request = _inpaint(model) if task == "inpaint" else _generate(model)
    base = studio.prepare(request)
    for name in (field.name for field in dataclasses.fields(request) if field.name in CHANGES):
        changed = studio.prepare(dataclasses.replace(request, **{name: CHANGES[name]}))
        if name in ignored:
            assert changed.key == base.key, f"{model}: {name} splits the key but the engine ignores it"
            assert name not in changed.parameters or name == "seed", f"{model}: the PNG claims {name}"
        else:
            assert changed.key != base.key, f"{model}: {name} changes the output but not the key"
            assert changed.parameters[name] == CHANGES[name]


def test_engines_that_ignore_seeds_say_seed_0(studio):
    assert studio.prepare(_inpaint("opencv-telea")).parameters["seed"] == 0
    assert studio.prepare(dataclasses.replace(_inpaint("sd15-inpainting"), seed=None)).parameters["seed"] >= 0


def test_progress_counts_what_the_engine_reports(studio):
    assert studio.prepare(_inpaint("sd15-inpainting")).total_steps == 16  # 20 steps x strength 0.8
    assert studio.prepare(_inpaint("lama")).total_steps == 1
    assert studio.prepare(dataclasses.replace(_generate("flux-schnell-hosted"), num_images=2)).total_steps == 2


def test_a_prompt_limit_applies_only_to_engines_that_declare_one(studio):
    long = "a very long prompt about " + "lighthouses and " * 60
    assert studio.prepare(dataclasses.replace(_generate("sd-turbo"), prompt=long)).warnings
    assert not studio.prepare(dataclasses.replace(_generate("flux-schnell-hosted"), prompt=long)).warnings
    assert not studio.prepare(dataclasses.replace(_inpaint("opencv-telea"), prompt=long)).warnings


def test_a_catalogue_entry_asking_an_engine_for_a_task_it_lacks_is_refused(tmp_path):
    extra = tmp_path / "models.toml"
    extra.write_text('[models.cv-paint]\ntasks = ["txt2img"]\nengine = "opencv"\n')
    with pytest.raises(BadParameterError, match="opencv engine cannot do"):
        Catalogue.load(extra)


# -- one schema: a field added in core/requests.py alone reaches every entry point ---------------------------------

NEW_FIELD = (
    '    clip_skip: Annotated[Annotated[int, Ge(1), Le(12)] | None, Field(description="Text encoder layers to skip.")]'
    " = None\n"
)
CHECKS = """
import json, sys
from PIL import Image
from core.api import create_api
from core.catalogue import Catalogue
from core.pool import ModelPool
from core.provenance import encode_png, read_parameters
from core.requests import GenerateRequest, InpaintRequest
from core.runner import Studio

studio = Studio(Catalogue.load(), ModelPool(1), None)
schema = create_api().openapi()["components"]["schemas"]
image, mask = Image.new("RGB", (64, 64)), Image.new("L", (64, 64), 255)

def key(request, value):
    return studio.prepare(request.replace(clip_skip=value)).key

turbo = studio.prepare(GenerateRequest(model="sd-turbo", prompt="a cat", seed=1, clip_skip=2))
png = encode_png(Image.new("RGB", (8, 8)), turbo.parameters)
print(json.dumps({
    "api": sorted(name for name in schema if "clip_skip" in schema[name].get("properties", {})),
    "api_bounds": [schema["GenerateBody"]["properties"]["clip_skip"]["anyOf"][0].get(bound) for bound in ("minimum", "maximum")],
    "diffusers_key": key(GenerateRequest(model="sd-turbo", prompt="a cat", seed=1), 2) != key(GenerateRequest(model="sd-turbo", prompt="a cat", seed=1), 3),
    "hosted_key": key(GenerateRequest(model="flux-schnell-hosted", prompt="a cat", seed=1), 2) == key(GenerateRequest(model="flux-schnell-hosted", prompt="a cat", seed=1), 3),
    "opencv_key": key(InpaintRequest(model="opencv-telea", image=image, mask=mask), 2) == key(InpaintRequest(model="opencv-telea", image=image, mask=mask), 3),
    "png": read_parameters(png).get("clip_skip"),
}))
"""


def test_a_field_added_to_the_schema_alone_reaches_the_api_cli_keys_and_pngs(tmp_path):
    shutil.copytree(ROOT / "core", tmp_path / "core", ignore=shutil.ignore_patterns("__pycache__"))
    requests = tmp_path / "core" / "requests.py"
    source = requests.read_text()
    anchor = "    scheduler: Annotated[Scheduler | None"
    assert source.count(anchor) == 1
    requests.write_text(source.replace(anchor, NEW_FIELD + anchor))

    def run(*args: str) -> str:
        completed = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert completed.returncode == 0, completed.stderr
        return completed.stdout

    assert "--clip-skip" in run("-m", "core", "generate", "--help")
    assert "--clip-skip" in run("-m", "core", "inpaint", "--help")
    seen = json.loads(run("-c", CHECKS))
    assert {"GenerateBody", "InpaintBody", "OutpaintBody", "GenerateJobBody", "InpaintJobBody"} <= set(seen["api"])
    assert seen["api_bounds"] == [1, 12]
    assert seen["diffusers_key"], "diffusers reads every field: the new one is in its keys"
    assert seen["hosted_key"] and seen["opencv_key"], "engines that do not read it keep one key"
    assert seen["png"] == 2
