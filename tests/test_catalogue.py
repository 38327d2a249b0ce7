"""The model catalogue: built-in entries, user files merged over them, availability, bad files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from core.catalogue import ENTRY_FIELDS, Catalogue
from core.errors import BadParameterError, ModelUnavailableError, UnknownModelError
from core.requests import GenerateRequest, fields, rule

REQUIRED_DEFAULTS = {
    "opencv-telea": None,
    "opencv-ns": None,
    "sd15-inpainting": "stable-diffusion-v1-5/stable-diffusion-inpainting",
    "sdxl-inpainting": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    "sd-turbo": "stabilityai/sd-turbo",
    "sdxl-turbo": "stabilityai/sdxl-turbo",
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
}


def test_builtin_catalogue_lists_the_default_models():
    catalogue = Catalogue.load()
    for model_id, hub in REQUIRED_DEFAULTS.items():
        assert catalogue.get(model_id).hub == hub


def test_opencv_is_always_available_and_hub_models_say_how_to_get_them():
    catalogue = Catalogue.load()
    assert catalogue.get("opencv-ns").availability().ready
    availability = catalogue.get("sd-turbo").availability()  # HF_HUB_OFFLINE=1 and an empty cache in tests
    assert not availability.ready
    assert "python -m core download sd-turbo" in availability.detail
    with pytest.raises(ModelUnavailableError, match="download sd-turbo"):
        catalogue.get("sd-turbo").require_available()


def test_user_file_adds_and_overrides_models(tmp_path):
    extra = tmp_path / "models.toml"
    extra.write_text(
        '[models.opencv-ns]\nname = "NS wide"\ntasks = ["inpaint"]\nengine = "opencv"\nworking_resolution = 0\n'
        'options = { method = "ns", radius = 9 }\n'
        f'[models.my-local]\nname = "Mine"\ntasks = ["txt2img"]\nengine = "diffusers"\npath = "{tmp_path}"\n'
    )
    catalogue = Catalogue.load(extra)
    assert catalogue.get("opencv-ns").options["radius"] == 9
    assert catalogue.get("my-local").availability().ready
    assert catalogue.get("sd15").hub  # built-ins still there
    assert [spec.id for spec in catalogue.for_task("txt2img")].count("my-local") == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ('[models.x]\ntasks = ["paint"]\nengine = "opencv"', "model 'x': tasks must be a non-empty list of"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "magic"', "model 'x': engine must be one of opencv, diffusers"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "diffusers"\nhub = "a/b"\npath = "/x"', "model 'x': give one of hub"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "diffusers"\nhub = "../etc"', "model 'x': hub must look like 'owner/name'"),
        ('[models."../x"]\ntasks = ["inpaint"]\nengine = "opencv"', "model '../x': id uses lowercase"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\ncolour = 3', "model 'x': colour: unknown field"),
        ('[models.x]\ntasks = ["txt2img"]\nengine = "opencv"', "model 'x': tasks: the opencv engine cannot do ['txt2img']"),
        ('[models.x]\nengine = "opencv"', "model 'x': tasks is required"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\ndefault_steps = "25"', "default_steps must be a whole number from 1 to 150, got '25'"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\ndefault_guidance = 31', "default_guidance must be a number in [0, 30], got 31"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\ndefault_scheduler = "Euler A"', "default_scheduler must be one of Euler, Euler a,"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\nmemory_mb = 0', "memory_mb must be a whole number of at least 1, got 0"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\noptions = 3', "model 'x': options must be a table"),
        ('[models]\nx = 3', "model 'x': must be a table of fields"),
        ("[models.x\n", "not valid TOML"),
    ],
)
def test_a_bad_catalogue_entry_is_one_line_naming_the_file_the_entry_and_the_field(tmp_path, body, message):
    extra = tmp_path / "bad.toml"
    extra.write_text(body)
    with pytest.raises(BadParameterError) as raised:
        Catalogue.load(extra)
    said = str(raised.value)
    assert "bad.toml" in said and message in said and "\n" not in said, said


def test_an_entry_takes_the_schema_defaults():
    """What a table leaves out comes from ModelSpec (the one place the defaults are written)."""
    spec = _only_entry('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\n')
    for name, field in ENTRY_FIELDS.items():
        if name in ("id", "name", "tasks", "engine", "options"):
            continue
        assert getattr(spec, name) == field.default, name
    assert spec.name == "x" and dict(spec.options) == {}


def test_the_catalogue_defaults_obey_the_request_bounds():
    """A model's default steps, guidance and scheduler are refused by the catalogue exactly where a
    request would refuse them: the bounds are the request schema's, not a copy."""
    request_fields = fields(GenerateRequest)
    for entry_field, request_field in [
        ("default_steps", "num_inference_steps"),
        ("default_guidance", "guidance_scale"),
        ("default_scheduler", "scheduler"),
    ]:
        assert rule(ENTRY_FIELDS[entry_field]) == rule(request_fields[request_field])


def test_the_readme_example_entry_is_a_valid_entry():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme[readme.index("[models.my-inpainter]") : readme.index("```", readme.index("[models.my-inpainter]"))]
    spec = _only_entry(example, model_id="my-inpainter")
    assert spec.default_scheduler == "DPM++ 2M" and spec.memory_mb == 5300


def _only_entry(body: str, model_id: str = "x"):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "models.toml"
        path.write_text(body)
        return Catalogue.load(path).get(model_id)


@pytest.mark.parametrize("model_id", ["/etc", "../x", "weights.bin", "stabilityai/sd-turbo", "", "x" * 500])
def test_unknown_or_path_like_model_ids_are_refused(model_id, tmp_path):
    catalogue = Catalogue.load()
    with pytest.raises(UnknownModelError) as raised:
        catalogue.resolve(model_id)
    assert "/" not in str(raised.value).replace("python -m core models", "")


def test_local_folder_is_only_accepted_when_allowed(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    catalogue = Catalogue.load()
    with pytest.raises(UnknownModelError):
        catalogue.resolve(str(tmp_path))
    spec = catalogue.resolve(str(tmp_path), allow_local_path=True)
    assert spec.engine == "diffusers" and spec.path == str(tmp_path.resolve())


def test_remove_defaults_to_lama_only_when_it_can_run(tmp_path):
    assert Catalogue.load().default_remove_model() == "opencv-telea"  # LaMa not downloaded here
    onnx_file = tmp_path / "lama.onnx"
    onnx_file.write_bytes(b"weights")
    extra = tmp_path / "models.toml"
    extra.write_text(f'[models.my-lama]\ntasks = ["inpaint"]\nengine = "lama"\npath = "{onnx_file}"\n')
    assert Catalogue.load(extra).default_remove_model() == "my-lama"


def test_a_bad_catalogue_entry_stops_the_app_before_it_serves(tmp_path):
    """`streamlit run Home.py` with a bad STUDIO_MODELS_FILE: exit 2 and one line, no traceback."""
    import os
    import socket
    import subprocess
    import sys

    extra = tmp_path / "mine.toml"
    extra.write_text('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\ndefault_steps = "25"\n')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "STUDIO_MODELS_FILE": str(extra), "STUDIO_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless", "true", "--server.port", str(port)]
    root = Path(__file__).resolve().parents[1]
    completed = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    errors = [line for line in (completed.stdout + completed.stderr).splitlines() if "mine.toml" in line]
    assert errors == ["error: mine.toml: model 'x': default_steps must be a whole number from 1 to 150, got '25'"]
    assert "Traceback" not in completed.stderr
