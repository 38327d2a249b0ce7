"""The diffusers engine on tiny offline pipelines, loaded through the real loading code.

Also the latent preview projection (core/preview.py) that the engine hands to reporters.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import weakref
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import torch
from PIL import Image

from core import preview
from core.catalogue import Catalogue, ModelSpec
from core.engines import load_engine
from core.engines.base import silent_reporter
from core.engines.diffusion import SCHEDULER_CLASSES, DiffusionEngine, out_of_memory_error
from core.errors import BadParameterError, CancelledError, EngineError, ModelUnavailableError, OutOfMemoryError
from core.requests import SCHEDULERS, GenerateRequest, InpaintRequest, image_seed
from tests.tiny_pipelines import write_single_file_checkpoint

PROMPT = "a red cat sitting on the green mat"
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


# ---------------------------------------------------------------------------------------------
# Helpers


class Recorder:
    """A reporter that records every call and can stop the run at a chosen step."""

    def __init__(self, cancel_at: int | None = None, raise_at: tuple[int, BaseException] | None = None):
        self.calls: list[tuple[int, int, object]] = []
        self.cancel_at = cancel_at
        self.raise_at = raise_at

    def __call__(self, step, total, preview=None):
        self.calls.append((step, total, preview))
        if self.cancel_at is not None and step == self.cancel_at:
            raise CancelledError("cancelled")
        if self.raise_at is not None and step == self.raise_at[0]:
            raise self.raise_at[1]

    @property
    def steps(self) -> list[int]:
        return [step for step, _, _ in self.calls]

    @property
    def totals(self) -> set[int]:
        return {total for _, total, _ in self.calls}


def spec_for(folder: Path, model_id: str = "tiny", tasks=("txt2img", "inpaint"), **fields) -> ModelSpec:
    return ModelSpec(id=model_id, name=f"Model {model_id}", tasks=tasks, engine="diffusers", path=str(folder), **fields)


def generate(engine: DiffusionEngine, report=silent_reporter, **fields):
    values = {"model": engine.spec.id, "prompt": PROMPT, "width": 64, "height": 64, "num_inference_steps": 2, "seed": 1}
    values.update(fields)
    request = GenerateRequest(**values).with_defaults(engine.spec)
    request.validate(engine.spec)
    return engine.text_to_image(request, report)


def picture_and_mask(size=(96, 64)) -> tuple[Image.Image, Image.Image]:
    from skimage import data

    picture = Image.fromarray(data.astronaut()).resize(size)
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4))
    return picture, mask


def inpaint(engine: DiffusionEngine, report=silent_reporter, size=(96, 64), **fields):
    picture, mask = picture_and_mask(size)
    values = {"model": engine.spec.id, "prompt": PROMPT, "num_inference_steps": 2, "seed": 1, "image": picture, "mask": mask}
    values.update(fields)
    request = InpaintRequest(**values).with_defaults(engine.spec)
    request.validate(engine.spec)
    return engine.inpaint(picture, mask, request, report)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def copy_pipeline(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def rewrite_index(folder: Path, **changes) -> None:
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text())
    index.update(changes)
    index_file.write_text(json.dumps(index))


def put_in_fake_hub_cache(cache: Path, repo: str, files: Path) -> None:
    """Lay out `files` as the Hugging Face cache holds a downloaded repo at revision main."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
    snapshot = repo_dir / "snapshots" / FAKE_COMMIT
    if files.is_dir():
        shutil.copytree(files, snapshot)
    else:
        snapshot.mkdir(parents=True)
        shutil.copy(files, snapshot / files.name)


@pytest.fixture
def fake_hub_cache(tmp_path, monkeypatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


# ---------------------------------------------------------------------------------------------
# Fixtures: engines loaded once per module


@pytest.fixture(scope="module")
def txt2img_engine(tiny_pipeline_dirs) -> DiffusionEngine:
    return DiffusionEngine.load(spec_for(tiny_pipeline_dirs["txt2img"], "tiny-sd"))


@pytest.fixture(scope="module")
def inpaint_engine(tiny_pipeline_dirs) -> DiffusionEngine:
    return DiffusionEngine.load(spec_for(tiny_pipeline_dirs["inpaint"], "tiny-sd-inpaint", tasks=("inpaint",)))


@pytest.fixture(scope="module")
def reference_image(txt2img_engine) -> np.ndarray:
    return pixels(generate(txt2img_engine, seed=1234).images[0])


@pytest.fixture(scope="module")
def single_file(tiny_pipeline_dirs, tmp_path_factory) -> Path:
    return write_single_file_checkpoint(tiny_pipeline_dirs["txt2img"], tmp_path_factory.mktemp("single") / "tiny-sd.safetensors")


# ---------------------------------------------------------------------------------------------
# The tiny pipelines themselves


def test_tiny_builds_are_identical(tiny_pipeline_dirs, tmp_path):
    from tests.tiny_pipelines import build_tiny_pipelines

    again = build_tiny_pipelines(tmp_path)
    for task in ("txt2img", "inpaint"):
        for weights in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
            assert (again[task] / weights).read_bytes() == (tiny_pipeline_dirs[task] / weights).read_bytes()
    unet_in = {task: json.loads((folder / "unet" / "config.json").read_text())["in_channels"] for task, folder in again.items()}
    assert unet_in == {"txt2img": 4, "inpaint": 9}


def test_tiny_tokenizer_pads_and_truncates_any_prompt_to_77(txt2img_engine):
    tokenizer = txt2img_engine._txt2img.tokenizer
    for text in ("the cat and the dog", "Café ☕ naïve façade — 東京", "x" * 500):
        ids = tokenizer(text, padding="max_length", truncation=True, max_length=77).input_ids
        assert len(ids) == 77
        assert tokenizer.unk_token_id not in ids[1 : ids.index(tokenizer.eos_token_id)]  # every byte has a token
    merged = tokenizer("the").input_ids
    assert len(merged) == 3  # start, "the</w>" (a merge), end


def test_catalogue_fixture_registers_both_tiny_models(tiny_catalogue, tiny_catalogue_file):
    assert isinstance(tiny_catalogue, Catalogue)
    assert tiny_catalogue.get("tiny-sd").tasks == ("txt2img", "inpaint")
    assert tiny_catalogue.get("tiny-sd-inpaint").tasks == ("inpaint",)
    for model_id in ("tiny-sd", "tiny-sd-inpaint"):
        spec = tiny_catalogue.get(model_id)
        assert spec.availability().ready
        assert (spec.engine, spec.working_resolution, spec.default_steps, spec.default_guidance) == ("diffusers", 64, 2, 7.5)


def test_catalogue_model_loads_through_the_engine_registry(tiny_catalogue):
    engine = load_engine(tiny_catalogue.get("tiny-sd-inpaint"))
    assert isinstance(engine, DiffusionEngine)
    from core.engines import engine_version

    assert engine_version(engine.spec).startswith("diffusers-")
    assert inpaint(engine).images[0].size == (96, 64)


# ---------------------------------------------------------------------------------------------
# Text to image


def test_same_seed_gives_the_same_pixels_and_another_seed_does_not(txt2img_engine, reference_image):
    assert np.array_equal(pixels(generate(txt2img_engine, seed=1234).images[0]), reference_image)
    assert not np.array_equal(pixels(generate(txt2img_engine, seed=1235).images[0]), reference_image)


def test_output_size_count_and_mode(txt2img_engine):
    result = generate(txt2img_engine, width=96, height=64, num_images=3)
    assert [image.size for image in result.images] == [(96, 64)] * 3
    assert {image.mode for image in result.images} == {"RGB"}
    assert result.filtered == (False, False, False)  # no safety checker in this model


def test_each_image_of_a_batch_starts_from_its_own_seed(txt2img_engine):
    batch = generate(txt2img_engine, seed=41, num_images=2).images
    second_alone = generate(txt2img_engine, seed=image_seed(41, 1)).images[0]
    assert not np.array_equal(pixels(batch[0]), pixels(batch[1]))
    # Same noise; batched and single UNet passes may round differently in the last bits
    # (another seed differs by ~35 levels on average).
    difference = np.abs(pixels(batch[1]) - pixels(second_alone))
    assert difference.max() <= 4 and difference.mean() < 1
    assert image_seed(2**32 - 1, 1) == 0


def test_prompt_and_guidance_change_the_picture(txt2img_engine, reference_image):
    assert not np.array_equal(pixels(generate(txt2img_engine, seed=1234, prompt="a blue house").images[0]), reference_image)
    assert not np.array_equal(pixels(generate(txt2img_engine, seed=1234, guidance_scale=1.0).images[0]), reference_image)


def test_every_scheduler_name_has_a_sampler():
    assert set(SCHEDULER_CLASSES) == set(SCHEDULERS)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_each_scheduler_runs_and_reports_every_step(txt2img_engine, inpaint_engine, scheduler):
    recorder = Recorder()
    result = generate(txt2img_engine, recorder, scheduler=scheduler)
    assert result.images[0].size == (64, 64)
    (total,) = recorder.totals
    assert total >= 2
    assert recorder.steps == list(range(total + 1))

    recorder = Recorder()
    inpaint(inpaint_engine, recorder, scheduler=scheduler, num_inference_steps=4, strength=0.5)
    (total,) = recorder.totals
    assert recorder.steps == list(range(total + 1))


def test_schedulers_differ_and_a_stateful_one_is_fresh_each_run(txt2img_engine):
    runs = {name: pixels(generate(txt2img_engine, scheduler=name, num_inference_steps=3).images[0]) for name in ("DPM++ 2M", "DPM++ 2M Karras", "Euler")}
    assert not np.array_equal(runs["DPM++ 2M"], runs["DPM++ 2M Karras"])
    assert not np.array_equal(runs["DPM++ 2M"], runs["Euler"])
    used = txt2img_engine._txt2img.scheduler
    assert np.array_equal(pixels(generate(txt2img_engine, scheduler="DPM++ 2M", num_inference_steps=3).images[0]), runs["DPM++ 2M"])
    # Schedulers keep per-run state (step index, earlier outputs): never one object for two runs.
    assert txt2img_engine._txt2img.scheduler is not used
    assert txt2img_engine._txt2img.scheduler is not txt2img_engine._inpaint.scheduler


def test_inpainting_only_model_refuses_text_to_image(inpaint_engine):
    with pytest.raises(BadParameterError, match="cannot generate images from text"):
        inpaint_engine.text_to_image(GenerateRequest(model="x", prompt=PROMPT, width=64, height=64, num_inference_steps=2, guidance_scale=7.5, seed=1), silent_reporter)


def test_sizes_the_vae_cannot_make_are_refused(txt2img_engine):
    request = GenerateRequest(model="x", prompt=PROMPT, width=68, height=64, num_inference_steps=2, guidance_scale=7.5, seed=1)
    with pytest.raises(BadParameterError, match="multiples of 8"):
        txt2img_engine.text_to_image(request, silent_reporter)


# ---------------------------------------------------------------------------------------------
# Progress, preview, cancel, errors


def test_progress_is_monotonic_ends_at_total_and_previews_the_latents(txt2img_engine):
    recorder = Recorder()
    generate(txt2img_engine, recorder, width=128, height=96, num_inference_steps=3, scheduler="Euler")
    assert recorder.calls[0][:2] == (0, 3)
    assert recorder.steps == [0, 1, 2, 3]
    assert recorder.totals == {3}
    final_preview = recorder.calls[-1][2]
    image = final_preview()
    assert image.mode == "RGB" and image.size == (128 // 8, 96 // 8)  # latent size


def test_inpaint_runs_only_the_steps_strength_keeps(inpaint_engine):
    recorder = Recorder()
    result = inpaint(inpaint_engine, recorder, scheduler="Euler", num_inference_steps=10, strength=0.3)
    assert recorder.steps == [0, 1, 2, 3] and recorder.totals == {3}  # int(10 x 0.3)
    assert result.images[0].size == (96, 64)


def test_cancel_from_the_reporter_stops_after_the_first_step(txt2img_engine, reference_image):
    recorder = Recorder(cancel_at=1)
    with pytest.raises(CancelledError):
        generate(txt2img_engine, recorder, num_inference_steps=6, scheduler="Euler")
    assert recorder.steps == [0, 1]
    # The engine is intact: the next run is the same as before the cancel.
    assert np.array_equal(pixels(generate(txt2img_engine, seed=1234).images[0]), reference_image)


def test_cancel_stops_inpainting_too(inpaint_engine):
    recorder = Recorder(cancel_at=1)
    with pytest.raises(CancelledError):
        inpaint(inpaint_engine, recorder, num_inference_steps=6, scheduler="Euler")
    assert recorder.steps == [0, 1]


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to allocate 4 GB"),
        MemoryError(),
    ],
)
def test_out_of_memory_errors_become_one_user_message(error):
    mapped = out_of_memory_error(error)
    assert isinstance(mapped, OutOfMemoryError)
    assert str(mapped) == "ran out of memory: lower the size, steps or number of images"


@pytest.mark.parametrize("error", [RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("out of range"), KeyError("x")])
def test_other_errors_are_not_mistaken_for_out_of_memory(error):
    assert out_of_memory_error(error) is None


def test_out_of_memory_during_a_run_is_reported_as_such(txt2img_engine, reference_image):
    recorder = Recorder(raise_at=(1, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")))
    with pytest.raises(OutOfMemoryError, match="lower the size"):
        generate(txt2img_engine, recorder)
    assert np.array_equal(pixels(generate(txt2img_engine, seed=1234).images[0]), reference_image)


def test_a_failure_inside_the_model_is_an_engine_error_without_details(txt2img_engine):
    recorder = Recorder(raise_at=(1, RuntimeError("expected scalar type Half but found Float at /tmp/secret/file.py")))
    with pytest.raises(EngineError) as raised:
        generate(txt2img_engine, recorder)
    assert "/tmp" not in str(raised.value) and "RuntimeError" in str(raised.value)


def test_prompt_token_count_for_truncation_warnings(txt2img_engine):
    assert txt2img_engine.max_prompt_tokens == 77
    assert txt2img_engine.prompt_token_count("") == 2  # start and end markers
    assert txt2img_engine.prompt_token_count("the cat") < txt2img_engine.prompt_token_count("the cat and the dog")
    assert txt2img_engine.prompt_token_count("the cat " * 60) > 77


def test_counting_prompt_tokens_never_touches_the_tokenizer_the_pipeline_runs_with(txt2img_engine, monkeypatch):
    """Pages count tokens on their own threads while the queue's worker runs the pipeline: a tokenizer is
    not thread-safe, so the count must use one the pipeline never uses."""
    pipeline_tokenizer = txt2img_engine._txt2img.tokenizer
    used = []
    call = type(pipeline_tokenizer).__call__

    def recording(self, *args, **kwargs):
        used.append(self)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(type(pipeline_tokenizer), "__call__", recording)
    counts = []
    threads = [threading.Thread(target=lambda: counts.append(txt2img_engine.prompt_token_count("a cat"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(counts) == 4 and len(set(counts)) == 1 and used  # counted, with a tokenizer...
    assert all(tokenizer is not pipeline_tokenizer for tokenizer in used)  # ...that is not the pipeline's


# ---------------------------------------------------------------------------------------------
# Inpainting


def test_inpainting_reuses_the_text_to_image_components(txt2img_engine):
    txt2img, inpainting = txt2img_engine._txt2img, txt2img_engine._inpaint
    assert type(inpainting).__name__ == "StableDiffusionInpaintPipeline"
    assert inpainting.unet is txt2img.unet
    assert inpainting.vae is txt2img.vae and inpainting.text_encoder is txt2img.text_encoder


@pytest.mark.parametrize("engine_name", ["txt2img_engine", "inpaint_engine"])
def test_inpaint_size_and_seed(request, engine_name):
    engine = request.getfixturevalue(engine_name)
    first = inpaint(engine, seed=5, size=(96, 64)).images
    assert len(first) == 1 and first[0].size == (96, 64) and first[0].mode == "RGB"
    assert np.array_equal(pixels(inpaint(engine, seed=5).images[0]), pixels(first[0]))
    assert not np.array_equal(pixels(inpaint(engine, seed=6).images[0]), pixels(first[0]))


def test_inpaint_refuses_a_mask_of_another_size(inpaint_engine):
    picture, mask = picture_and_mask()
    request = InpaintRequest(model="x", prompt=PROMPT, num_inference_steps=2, guidance_scale=7.5, seed=1, image=picture, mask=mask)
    with pytest.raises(BadParameterError, match="mask is 48x32"):
        inpaint_engine.inpaint(picture, mask.resize((48, 32)), request, silent_reporter)


# ---------------------------------------------------------------------------------------------
# Loading: sources and refusals


def test_hub_model_loads_from_the_local_cache(tiny_pipeline_dirs, fake_hub_cache, reference_image):
    put_in_fake_hub_cache(fake_hub_cache, "studio-tests/tiny-sd", tiny_pipeline_dirs["txt2img"])
    spec = ModelSpec(
        id="hub-tiny",
        name="Hub tiny",
        tasks=("txt2img",),
        engine="diffusers",
        hub="studio-tests/tiny-sd",
        options=MappingProxyType({"variant": "fp16"}),  # a GPU-only choice: ignored in fp32, and absent here
    )
    assert spec.availability().ready
    engine = DiffusionEngine.load(spec)
    assert np.array_equal(pixels(generate(engine, seed=1234).images[0]), reference_image)


def test_hub_model_not_in_the_cache_says_how_to_get_it(fake_hub_cache, tmp_path):
    spec = ModelSpec(id="not-here", name="Not here", tasks=("txt2img",), engine="diffusers", hub="studio-tests/never-downloaded")
    with pytest.raises(ModelUnavailableError) as raised:
        DiffusionEngine.load(spec)
    message = str(raised.value)
    assert message == f"Not here is not available: {spec.download_hint()}"
    assert "python -m core download not-here" in message and "HF_HUB_OFFLINE" in message
    assert str(tmp_path) not in message and "Traceback" not in message


def test_hub_download_missing_weights_is_incomplete(tiny_pipeline_dirs, fake_hub_cache, tmp_path):
    partial = copy_pipeline(tiny_pipeline_dirs["txt2img"], tmp_path / "partial")
    (partial / "unet" / "diffusion_pytorch_model.safetensors").unlink()  # an interrupted download
    put_in_fake_hub_cache(fake_hub_cache, "studio-tests/partial", partial)
    spec = ModelSpec(id="partial", name="Partial", tasks=("txt2img",), engine="diffusers", hub="studio-tests/partial")
    with pytest.raises(ModelUnavailableError, match="downloaded files are incomplete.*python -m core download partial"):
        DiffusionEngine.load(spec)


@pytest.mark.parametrize(
    "changes",
    [
        {"unet": ["my_unet", "MyUNet2DConditionModel"]},  # a component from the repo's own code
        {"_class_name": ["pipeline", "MyPipeline"]},  # a community/custom pipeline
        {"_class_name": "NotADiffusersPipeline"},
        {"vae": ["diffusers", "NoSuchAutoencoder"]},
        {"text_encoder": ["os", "system"]},
    ],
)
def test_model_index_asking_for_remote_code_is_refused(tiny_pipeline_dirs, tmp_path, changes):
    folder = copy_pipeline(tiny_pipeline_dirs["txt2img"], tmp_path / "custom")
    rewrite_index(folder, **changes)
    with pytest.raises(ModelUnavailableError, match="remote code is never run") as raised:
        DiffusionEngine.load(spec_for(folder))
    assert str(tmp_path) not in str(raised.value)


def test_pickle_only_weights_are_refused(tiny_pipeline_dirs, tmp_path):
    folder = copy_pipeline(tiny_pipeline_dirs["txt2img"], tmp_path / "pickled")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelUnavailableError, match="ships no safetensors weights; only safetensors are loaded"):
        DiffusionEngine.load(spec_for(folder))


@pytest.mark.parametrize("name", ["model.ckpt", "model.bin", "model.pt"])
def test_pickle_single_files_are_refused(tmp_path, name):
    checkpoint = tmp_path / name
    checkpoint.write_bytes(b"not opened")
    with pytest.raises(ModelUnavailableError, match="only safetensors are loaded"):
        DiffusionEngine.load(spec_for(checkpoint))


def test_missing_or_foreign_folders_are_refused_without_their_path(tmp_path):
    with pytest.raises(ModelUnavailableError, match="local files for tiny are missing") as raised:
        DiffusionEngine.load(spec_for(tmp_path / "gone"))
    assert str(tmp_path) not in str(raised.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="not a diffusers pipeline") as raised:
        DiffusionEngine.load(spec_for(tmp_path / "empty"))
    assert str(tmp_path) not in str(raised.value)


def test_broken_weights_are_a_clear_load_error(tiny_pipeline_dirs, tmp_path):
    folder = copy_pipeline(tiny_pipeline_dirs["txt2img"], tmp_path / "broken")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelUnavailableError, match="incomplete or not a supported diffusers pipeline") as raised:
        DiffusionEngine.load(spec_for(folder))
    assert str(tmp_path) not in str(raised.value)


def test_urls_outside_the_hub_are_refused():
    spec = ModelSpec(id="web", name="Web", tasks=("txt2img",), engine="diffusers", url="https://example.com/model.safetensors")
    with pytest.raises(ModelUnavailableError, match="only huggingface.co file URLs"):
        DiffusionEngine.load(spec)


def test_safety_checker_can_be_turned_off_only_by_the_operator(safety_pipelines, monkeypatch):
    flagging = DiffusionEngine.load(spec_for(safety_pipelines["flag_all"]))
    result = generate(flagging, num_images=2)
    assert result.filtered == (True, True)
    assert all(pixels(image).max() == 0 for image in result.images)  # diffusers blacks them out
    assert inpaint(flagging).filtered == (True,)  # shared with the inpainting pipeline

    assert generate(DiffusionEngine.load(spec_for(safety_pipelines["flag_none"]))).filtered == (False,)

    monkeypatch.setenv("STUDIO_SAFETY_CHECKER", "0")
    unchecked = DiffusionEngine.load(spec_for(safety_pipelines["flag_all"]))
    result = generate(unchecked)
    assert result.filtered == (False,) and pixels(result.images[0]).max() > 0


def test_single_file_checkpoint_with_a_local_config(single_file, tiny_pipeline_dirs, reference_image):
    spec = spec_for(single_file, "single", options=MappingProxyType({"config": str(tiny_pipeline_dirs["txt2img"])}))
    engine = DiffusionEngine.load(spec)
    assert np.array_equal(pixels(generate(engine, seed=1234).images[0]), reference_image)
    assert inpaint(engine).images[0].size == (96, 64)
    assert engine._inpaint.unet is engine._txt2img.unet


def test_single_file_from_a_hub_url_uses_the_cache(single_file, tiny_pipeline_dirs, fake_hub_cache, reference_image):
    put_in_fake_hub_cache(fake_hub_cache, "studio-tests/single", single_file)
    spec = ModelSpec(
        id="single-url",
        name="Single URL",
        tasks=("txt2img",),
        engine="diffusers",
        url=f"https://huggingface.co/studio-tests/single/blob/main/{single_file.name}",
        options=MappingProxyType({"config": str(tiny_pipeline_dirs["txt2img"])}),
    )
    engine = DiffusionEngine.load(spec)
    assert np.array_equal(pixels(generate(engine, seed=1234).images[0]), reference_image)


def test_single_file_without_a_config_needs_the_matching_pipeline_configuration(single_file, fake_hub_cache):
    with pytest.raises(ModelUnavailableError) as raised:
        DiffusionEngine.load(spec_for(single_file, "single"))
    message = str(raised.value)
    assert "pipeline configuration (stable-diffusion-v1-5/stable-diffusion-v1-5) is not downloaded" in message
    assert str(single_file.parent) not in message


def test_close_releases_the_model(tiny_pipeline_dirs):
    engine = DiffusionEngine.load(spec_for(tiny_pipeline_dirs["txt2img"]))
    unet = weakref.ref(engine._txt2img.unet)
    engine.close()
    assert unet() is None
    with pytest.raises(EngineError, match="was unloaded"):
        generate(engine)
    with pytest.raises(EngineError, match="was unloaded"):
        engine.prompt_token_count("a cat")


# ---------------------------------------------------------------------------------------------
# Live preview projection


def test_preview_is_a_small_rgb_image_made_in_a_few_milliseconds():
    latents = torch.randn(2, 4, 64, 64)
    preview.latents_to_rgb(latents)  # first call pays one-off setup
    timings = []
    for _ in range(10):
        start = time.perf_counter()
        image = preview.latents_to_rgb(latents)
        timings.append(time.perf_counter() - start)
    assert image.mode == "RGB" and image.size == (64, 64)
    assert min(timings) < 0.020


def test_preview_projects_known_latents_to_known_colours():
    zero = preview.latents_to_rgb(torch.zeros(1, 4, 8, 8))
    assert zero.getpixel((0, 0)) == (128, 128, 128)  # latent 0 -> colour 0 -> mid grey
    first_channel = torch.zeros(4, 8, 8)
    first_channel[0] = 1.0
    # SD's first latent channel is mostly brightness: (0.3512, 0.2297, 0.3227) -> x127.5 + 127.5
    assert preview.latents_to_rgb(first_channel).getpixel((3, 3)) == (172, 157, 169)


def test_preview_uses_the_first_image_and_the_sdxl_factors_on_request():
    latents = torch.randn(3, 4, 16, 24)
    latents[1:] = 0
    as_sd = pixels(preview.latents_to_rgb(latents, "sd"))
    assert as_sd.shape == (16, 24, 3)
    assert not np.array_equal(as_sd, pixels(preview.latents_to_rgb(latents[1:], "sd")))
    assert not np.array_equal(as_sd, pixels(preview.latents_to_rgb(latents, "sdxl")))


def test_preview_refuses_unknown_families_and_shapes():
    with pytest.raises(ValueError, match="family"):
        preview.latents_to_rgb(torch.zeros(1, 4, 8, 8), "flux")
    with pytest.raises(ValueError, match="4 channels"):
        preview.latents_to_rgb(torch.zeros(1, 16, 8, 8))
