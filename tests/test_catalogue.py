"""The model catalogue: built-in entries, user files merged over them, availability, bad files."""

from __future__ import annotations

import pytest

from core.catalogue import Catalogue
from core.errors import BadParameterError, ModelUnavailableError, UnknownModelError

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
        ('[models.x]\ntasks = ["paint"]\nengine = "opencv"', "tasks"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "magic"', "engine"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "diffusers"\nhub = "a/b"\npath = "/x"', "one of hub"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "diffusers"\nhub = "../etc"', "owner/name"),
        ('[models."../x"]\ntasks = ["inpaint"]\nengine = "opencv"', "ids use"),
        ('[models.x]\ntasks = ["inpaint"]\nengine = "opencv"\ncolour = 3', "unknown field"),
        ("[models.x\n", "not valid TOML"),
    ],
)
def test_bad_catalogue_files_are_refused_with_a_message(tmp_path, body, message):
    extra = tmp_path / "bad.toml"
    extra.write_text(body)
    with pytest.raises(BadParameterError, match=message):
        Catalogue.load(extra)


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
