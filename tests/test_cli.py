"""`python -m core`: real subprocesses, real files, exit codes and one-line messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(completed: subprocess.CompletedProcess, *fragments: str) -> None:
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    assert "Traceback" not in completed.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def photo_files(tmp_path, astronaut):
    image = tmp_path / "astronaut.png"
    astronaut.save(image)
    mask = Image.new("L", astronaut.size, 0)
    ImageDraw.Draw(mask).rectangle((200, 180, 280, 240), fill=255)
    mask_path = tmp_path / "astronaut-mask.png"
    mask.save(mask_path)
    return image, mask_path


def test_models_lists_every_model_with_availability():
    completed = run_cli("models")
    assert completed.returncode == 0
    lines = {line.split()[0]: line for line in completed.stdout.splitlines()[1:]}
    assert lines["opencv-telea"].rstrip().endswith("yes")
    assert "python -m core download sd-turbo" in lines["sd-turbo"]


def test_inpaint_then_info_then_cache_hit_across_processes(tmp_path, photo_files):
    image, mask = photo_files
    out = tmp_path / "out.png"
    completed = run_cli("inpaint", str(image), str(mask), "--model", "opencv-ns", "-o", str(out), "--seed", "5")
    assert completed.returncode == 0, completed.stderr
    result = np.asarray(Image.open(out).convert("RGB"))
    original = np.asarray(Image.open(image).convert("RGB"))
    assert result.shape == original.shape and not np.array_equal(result, original)
    assert np.array_equal(result[:150], original[:150])  # far above the mask: untouched

    info = run_cli("info", str(out))
    parameters = json.loads(info.stdout)
    # OpenCV ignores seeds, so every seed is recorded (and cached) as 0.
    assert parameters["model"] == "opencv-ns" and parameters["seed"] == 0 and parameters["padding"] == 32

    again = run_cli("inpaint", str(image), str(mask), "--model", "opencv-ns", "-o", str(tmp_path / "again.png"), "--seed", "5")
    assert again.returncode == 0 and "cache hit" in again.stderr
    assert (tmp_path / "again.png").read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        (lambda p: ["inpaint", str(p["text"]), str(p["mask"]), "--model", "opencv-ns", "-o", "x.png"], ["unsupported image"]),
        (lambda p: ["inpaint", "nope.png", str(p["mask"]), "--model", "opencv-ns", "-o", "x.png"], ["does not exist"]),
        (lambda p: ["inpaint", str(p["image"]), str(p["mask"]), "--model", "no-such", "-o", "x.png"], ["unknown model"]),
        (lambda p: ["inpaint", str(p["image"]), str(p["empty"]), "--model", "opencv-ns", "-o", "x.png"], ["mask is empty"]),
        (lambda p: ["inpaint", str(p["image"]), str(p["mask"]), "--model", "opencv-ns", "-o", "x.png", "--padding", "-1"], ["padding"]),
        (lambda p: ["inpaint", str(p["image"]), str(p["mask"]), "--model", "sd-turbo", "-o", "x.png"], ["download sd-turbo"]),
        (lambda p: ["generate", "a cat", "--model", "opencv-ns", "-o", "x.png"], ["cannot generate"]),
        (lambda p: ["info", str(p["image"])], ["parameters"]),
        (lambda p: ["download", "sd-turbo"], ["HF_HUB_OFFLINE"]),
        (lambda p: ["inpaint", str(p["image"])], ["required"]),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, photo_files, make_args, fragments):
    image, mask = photo_files
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty-mask.png"
    Image.new("L", (512, 512), 0).save(empty)
    paths = {"image": image, "mask": mask, "text": text, "empty": empty}
    completed = run_cli(*make_args(paths))
    assert_one_line_error(completed, *fragments)
    assert str(tmp_path) not in completed.stderr


def test_batch_matches_masks_by_name_and_reports_missing(tmp_path, astronaut, coffee):
    images, masks_dir, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir(), masks_dir.mkdir()
    for name, photo in [("a", astronaut), ("b", coffee), ("c", astronaut)]:
        photo.save(images / f"{name}.jpg", quality=95)
    for name, photo in [("a", astronaut), ("b", coffee)]:
        mask = Image.new("L", photo.size, 0)
        ImageDraw.Draw(mask).ellipse((100, 100, 160, 150), fill=255)
        mask.save(masks_dir / f"{name}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    completed = run_cli("batch", "--images", str(images), "--masks", str(masks_dir), "--model", "opencv-telea", "-o", str(out))
    assert completed.returncode == 2  # some images failed
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert "c.jpg: no mask named like c" in completed.stderr
    assert "2 of 4 images done" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_batch_images_with_one_stem_each_get_their_own_result(tmp_path, astronaut):
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    small = astronaut.resize((128, 128))
    small.save(images / "photo.jpg", quality=95)
    small.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(images / "photo.png")
    mask = Image.new("L", small.size, 0)
    ImageDraw.Draw(mask).ellipse((40, 40, 80, 80), fill=255)
    mask.save(tmp_path / "mask.png")
    completed = run_cli("batch", "--images", str(images), "--mask", str(tmp_path / "mask.png"), "--model", "opencv-telea", "-o", str(out))
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in out.iterdir()) == ["photo (2).png", "photo.png"]
    first, second = (np.asarray(Image.open(out / name)) for name in ("photo.png", "photo (2).png"))
    assert not np.array_equal(first, second)  # two results, neither written over the other
    assert "2 of 2 images done" in completed.stderr


@pytest.mark.slow
def test_generate_from_a_local_pipeline_folder_writes_numbered_images(tmp_path, tiny_pipeline_dirs):
    out = tmp_path / "gen.png"
    completed = run_cli(
        "generate", "a red cube", "--model", str(tiny_pipeline_dirs["txt2img"]), "-o", str(out),
        "--num-images", "2", "--steps", "2", "--width", "64", "--height", "64", "--seed", "3",
    )
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in tmp_path.glob("gen-*.png")) == ["gen-1.png", "gen-2.png"]
    assert json.loads(run_cli("info", str(tmp_path / "gen-2.png")).stdout)["seed"] == 4  # its own seed: replays alone
    assert "seed: 3" in completed.stderr


@pytest.mark.slow
def test_a_prompt_longer_than_the_text_encoder_reads_is_warned_about(tmp_path, tiny_pipeline_dirs):
    long_prompt = ", ".join(["a very detailed red cube on a wooden table"] * 12)
    completed = run_cli(
        "generate", long_prompt, "--model", str(tiny_pipeline_dirs["txt2img"]), "-o", str(tmp_path / "long.png"),
        "--steps", "1", "--width", "64", "--height", "64", "--seed", "1",
    )
    assert completed.returncode == 0, completed.stderr
    assert "warning: the prompt is about" in completed.stderr and "reads only 77" in completed.stderr
