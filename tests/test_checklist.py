"""The reliability checklist of issue 7, one test per item, each end to end through an entry point a user hits:
the CLI (`python -m core`, a real subprocess), the REST API (the app Home.py mounts, in process or served by
`streamlit run Home.py`), the pages (Streamlit AppTest), the shared job queue and the batch runner.

Each test's docstring quotes its item. The unit tests of each module check the pieces; these check that the
behaviour reaches the user: the message they see, what is (not) cached, what keeps working afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import io
import json
import logging
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin
from starlette.applications import Starlette
from starlette.testclient import TestClient
from streamlit.testing.v1 import AppTest

from core import batch, services
from core.api import API_PREFIX, api_routes
from core.catalogue import Catalogue
from core.errors import BadParameterError
from core.images import MODEL_BACKGROUND
from core.jobs import JobState
from core.pool import ModelPool
from core.requests import GenerateRequest, InpaintRequest
from core.runner import Studio
from core.store import PNG_SIGNATURE, ResultStore
from core.ui import sessions
from tests.api_helpers import wait_for_a_step, wait_for_status
from tests.app_helpers import (
    STROKES,
    click,
    open_inpaint_to_replace,
    open_page,
    run_until,
    texts,
    upload_and_draw,
)
from tests.app_server import AppServer, running_app
from tests.tiny_pipelines import write_catalogue

ROOT = Path(__file__).resolve().parents[1]
SECRET_TOKEN = "hf_checklistSecretToken0123456789"
LONG_STEPS = 150  # with 512 px tiny-sd steps, a run lasts long enough to act on while it runs


# -- helpers: bytes ---------------------------------------------------------------------------------------------------


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def grey_png_of_zeros(width: int, height: int) -> bytes:
    """A genuine 8-bit greyscale PNG of zeros, compressed row by row (tiny on disk, width x height decoded)."""
    row = b"\x00" * (1 + width)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def small_photo(photo: Image.Image, size: tuple[int, int] = (120, 80)) -> Image.Image:
    return photo.resize(size, Image.Resampling.LANCZOS)


# -- helpers: the result store ------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ["STUDIO_CACHE_DIR"])


def results_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "results"


def published_entries(cache: Path | None = None) -> list[Path]:
    """Every published entry directory of the store: results/<2 hex>/<64 hex>."""
    root = results_dir(cache)
    if not root.is_dir():
        return []
    return sorted(entry for shard in root.iterdir() if shard.is_dir() and len(shard.name) == 2 for entry in shard.iterdir())


def store_is_empty() -> bool:
    return published_entries() == [] and ResultStore(results_dir(), 1 << 30).total_bytes() == 0


# -- helpers: the CLI -----------------------------------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env or cli_env(),
    )


def cli_refusal(completed: subprocess.CompletedProcess) -> str:
    """The one line a refused CLI run prints (exit status 2, no traceback)."""
    assert completed.returncode == 2, (completed.returncode, completed.stderr)
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    assert "Traceback" not in completed.stderr
    return lines[0]


def run_cli_measured(*args: str, env: dict[str, str], tmp_path: Path) -> tuple[int, str, int]:
    """(exit status, stderr, peak resident memory in bytes) of one CLI run."""
    err_path = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
    with open(err_path, "wb") as err, open(os.devnull, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, stdout=out, stderr=err)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return process.returncode, err_path.read_text(), usage.ru_maxrss * 1024


# -- helpers: the REST API --------------------------------------------------------------------------------------------------


def error_of(response) -> tuple[int, str, str]:
    """(status, code, message) of an API error; the message is one line without a path or a traceback."""
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]["message"]
    assert "\n" not in message and "Traceback" not in message and "/tmp" not in message and str(ROOT) not in message
    return response.status_code, body["error"]["code"], message



@pytest.fixture
def api(make_api) -> TestClient:
    return make_api()


def api_inpaint(client: TestClient, image: bytes, mask: bytes, **fields):
    body = {"model": "opencv-telea", "image": b64(image), "mask": b64(mask), "seed": 0, **fields}
    return client.post(f"{API_PREFIX}/inpaint", json=body)


def long_job(seed: int) -> dict:
    return {"task": "generate", "model": "tiny-sd", "prompt": "a long job", "width": 512, "height": 512, "num_inference_steps": LONG_STEPS, "seed": seed}


# -- helpers: catalogues and long runs --------------------------------------------------------------------------------------


def catalogue_file(tmp_path: Path, folders: dict[str, Path], *, working_resolution: int = 64, extra: str = "") -> Path:
    path = write_catalogue(tmp_path / "models.toml", folders, working_resolution=working_resolution)
    if extra:
        path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def diffusers_entry(model_id: str, folder: Path, *, tasks: str = '["txt2img"]', working_resolution: int = 64) -> str:
    return (
        f"\n[models.{model_id}]\n"
        f'name = "{model_id} (test)"\n'
        f"tasks = {tasks}\n"
        'engine = "diffusers"\n'
        f"path = {json.dumps(str(folder))}\n"
        f"working_resolution = {working_resolution}\n"
        "size_multiple = 8\nmax_side = 512\ndefault_steps = 2\ndefault_guidance = 7.5\n"
    )


@pytest.fixture
def long_catalogue(tiny_pipeline_dirs, tmp_path, monkeypatch) -> Path:
    """The tiny pipelines at a 512 px working resolution: each step takes long enough to watch and stop."""
    path = catalogue_file(tmp_path, tiny_pipeline_dirs, working_resolution=512)
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(path))
    return path


def start_a_long_run(at: AppTest, page: str, *, model: str, prompt: str, button: str) -> str:
    """Runs `model` for LONG_STEPS steps (long_catalogue) from the `<page>.*` widgets; its job id, once past a step."""
    at.text_area(key=f"{page}.prompt").set_value(prompt)
    at.slider(key=f"{page}.{model}.steps").set_value(LONG_STEPS)
    at.run()
    click(at, button)
    queue, job_id = services.queue(), at.session_state[f"{page}.job"]
    run_until(at, lambda at: queue.status(job_id).step >= 1, what="the run to make a step")
    return job_id


# ================================================================================================================
# 1-10: what an uploaded image can be
# ================================================================================================================


@pytest.mark.parametrize(
    "name, payload",
    [
        ("empty.png", b""),
        ("notes.png", b"Meeting notes, not a picture.\n" * 40),
        ("drawing.png", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="9" height="9"/></svg>'),
    ],
    ids=["zero-byte", "non-image", "svg-named-png"],
)
def test_item_01_unsupported_uploads_get_a_clear_message_and_nothing_is_cached(tmp_path, name, payload):
    """1. zero-byte, non-image, SVG-named-.png → clear "unsupported image" message; nothing cached."""
    image = tmp_path / "private-folder" / name
    image.parent.mkdir()
    image.write_bytes(payload)
    mask = tmp_path / "mask.png"
    mask.write_bytes(encode(box_mask((64, 64), (10, 10, 30, 30))))
    out = tmp_path / "out.png"
    line = cli_refusal(run_cli("inpaint", image, mask, "--model", "opencv-telea", "-o", out))
    assert line.startswith("error: unsupported image"), line
    assert "private-folder" not in line and str(tmp_path) not in line
    assert not out.exists()
    assert store_is_empty()


def test_item_02_truncated_and_corrupt_files_are_refused_at_load_and_the_rest_of_a_batch_runs(tmp_path, astronaut):
    """2. truncated / bad-CRC PNG and truncated JPEG → refused at load."""
    photos = tmp_path / "photos"
    photos.mkdir()
    png, jpeg = encode(astronaut), encode(astronaut, "JPEG", quality=90)
    (photos / "good.png").write_bytes(png)
    (photos / "cut-png.png").write_bytes(png[: len(png) // 2])
    (photos / "cut-jpeg.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    bad_crc = bytearray(png)
    at = png.index(b"IDAT")
    idat_length = struct.unpack(">I", png[at - 4 : at])[0]
    bad_crc[at + 4 + idat_length] ^= 0x01  # the IDAT's CRC: the pixel stream itself would still decode
    (photos / "bad-crc.png").write_bytes(bytes(bad_crc))
    mask = tmp_path / "mask.png"
    mask.write_bytes(encode(box_mask(astronaut.size, (200, 200, 260, 260))))
    out = tmp_path / "out"

    completed = run_cli("batch", "--images", photos, "--mask", mask, "-o", out, "--model", "opencv-telea", "--seed", "0")

    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = {line.split("] ", 1)[1].split(":", 1)[0]: line for line in completed.stderr.splitlines() if line.startswith("[")}
    for broken in ("cut-png.png", "cut-jpeg.jpg", "bad-crc.png"):
        assert lines[broken].endswith(": image file is truncated or corrupt"), lines[broken]
    assert lines["good.png"].endswith(": done")
    assert sorted(path.name for path in out.iterdir()) == ["good.png"]
    assert len(published_entries()) == 1  # only the good photo's result


@pytest.fixture(scope="module")
def decode_bomb() -> bytes:
    bomb = grey_png_of_zeros(9500, 9500)  # 90 MP once decoded
    assert len(bomb) < 200_000
    return bomb


def test_item_03_decompression_bombs_are_refused_before_decoding(tmp_path, decode_bomb):
    """3. 30000² header bomb; a small file that decodes to 9500² → refused before decoding (own limits;
    Pillow's warning turned into an error)."""
    header_bomb = bytearray(encode(Image.new("L", (16, 16))))
    at = bytes(header_bomb).index(b"IHDR")
    header_bomb[at + 4 : at + 12] = struct.pack(">II", 30000, 30000)
    header_bomb[at + 17 : at + 21] = struct.pack(">I", zlib.crc32(bytes(header_bomb[at : at + 17])))
    files = {"header-bomb.png": bytes(header_bomb), "decode-bomb.png": decode_bomb, "normal.png": encode(Image.new("L", (64, 64)))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    mask = tmp_path / "mask.png"
    mask.write_bytes(encode(box_mask((64, 64), (8, 8, 24, 24))))
    env = cli_env()

    def inpaint(name: str, environment: dict[str, str]) -> tuple[int, str, int]:
        return run_cli_measured("inpaint", str(tmp_path / name), str(mask), "--model", "opencv-telea", "-o", str(tmp_path / "out.png"), env=environment, tmp_path=tmp_path)

    status, _, baseline_rss = inpaint("normal.png", env)
    assert status == 0
    status, stderr, _ = inpaint("header-bomb.png", env)
    assert status == 2 and "900 MP" in stderr and "the limit is 48 MP" in stderr, stderr
    status, stderr, bomb_rss = inpaint("decode-bomb.png", env)
    assert status == 2 and "90 MP" in stderr and "the limit is 48 MP" in stderr, stderr
    # Decoding would have taken 90 MB for the pixels alone; the refusal costs no more than a normal run.
    assert bomb_rss < baseline_rss + 40 * 2**20, (bomb_rss, baseline_rss)

    # An operator who raises our limits past Pillow's bomb threshold is still protected by it (the warning is an
    # error), and the message names a limit the image is actually over.
    generous = {**env, "STUDIO_MAX_IMAGE_PIXELS": "200000000", "STUDIO_MAX_IMAGE_SIDE": "20000"}
    status, stderr, bomb_rss = inpaint("decode-bomb.png", generous)
    assert status == 2 and "too large to decode safely (90 MP)" in stderr, stderr
    assert bomb_rss < baseline_rss + 40 * 2**20
    named_limit = float(stderr.split("the limit is ")[1].split(" MP")[0])
    assert named_limit < 90, f"the message names a limit the 90 MP image is under: {stderr.strip()}"
    assert len(published_entries()) == 1  # the normal image's result only: nothing from the bombs


def test_item_04_extreme_sides_and_aspect_ratios_are_refused(api):
    """4. 100000×1 or 1×1 images → refused by side/aspect rules."""
    mask = encode(box_mask((8, 8), (2, 2, 6, 6)))
    cases = [
        (Image.new("L", (100_000, 1)), "the limit is 8192 px per side"),
        (Image.new("RGB", (1, 1)), "each side must be at least 8 px"),
        (Image.new("RGB", (2000, 100)), "aspect ratio 20:1"),
    ]
    for image, fragment in cases:
        status, code, message = error_of(api_inpaint(api, encode(image), mask))
        assert (status, code) == (400, "bad_image") and fragment in message, message
    assert services.queue().jobs() == [] and store_is_empty()


def test_item_05_huge_png_text_chunks_are_refused_cleanly(api):
    """5. PNG with a huge text chunk → refused cleanly (compressed or not, international or not)."""
    one = PngImagePlugin.PngInfo()
    one.add_text("comment", "x" * 5_000_000, zip=True)  # one compressed chunk over Pillow's per-chunk cap
    many = PngImagePlugin.PngInfo()
    for index in range(80):  # each under the per-chunk cap, 72 MB together
        many.add_text(f"note{index}", "y" * 900_000, zip=True)
    plain = PngImagePlugin.PngInfo()
    plain.add_text("comment", "z" * 2_000_000)  # an uncompressed tEXt: Pillow reads it whole, however large
    international = PngImagePlugin.PngInfo()
    international.add_itxt("comment", "é" * 1_000_000)  # an uncompressed iTXt, 2 MB of UTF-8
    mask = encode(box_mask((32, 32), (8, 8, 16, 16)))
    for info in (one, many, plain, international):
        png = encode(Image.new("RGB", (32, 32), (10, 20, 30)), pnginfo=info)
        assert len(png) < 2_200_000
        status, code, message = error_of(api_inpaint(api, png, mask))
        assert (status, code) == (400, "bad_image")
        assert message == "image metadata is too large (an oversized PNG text chunk)"
    assert api.get(f"{API_PREFIX}/health").status_code == 200
    assert store_is_empty()


def _inpaint_outside(api: TestClient, image_bytes: bytes, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, str]:
    """Inpaint a small box with no feathering; returns (result pixels, True outside the box, result mode)."""
    box = (size[0] // 2 - 6, size[1] // 2 - 6, size[0] // 2 + 6, size[1] // 2 + 6)
    response = api_inpaint(api, image_bytes, encode(box_mask(size, box)), mask_blur=0)
    assert response.status_code == 200, response.text
    result = Image.open(io.BytesIO(base64.b64decode(response.json()["image"])))
    outside = np.ones((size[1], size[0]), bool)
    outside[box[1] : box[3], box[0] : box[2]] = False
    return np.asarray(result), outside, result.mode


def test_item_06_cmyk_palette_grey_alpha_and_one_bit_come_out_as_correct_rgb(api, coffee):
    """6. CMYK, palette, greyscale+alpha, 1-bit → correct RGB."""
    photo = small_photo(coffee)
    size = photo.size

    cmyk = encode(photo.convert("CMYK"), "JPEG", quality=95)
    after, outside, mode = _inpaint_outside(api, cmyk, size)
    assert mode == "RGB"
    error = np.abs(after[outside].astype(int) - np.asarray(photo)[outside].astype(int))
    assert error.mean() < 4, error.mean()  # the photo's colours (not inverted, not garbled), up to JPEG loss

    palette = photo.quantize(32)
    after, outside, mode = _inpaint_outside(api, encode(palette), size)
    assert mode == "RGB"
    assert np.array_equal(after[outside], np.asarray(palette.convert("RGB"))[outside])

    grey = np.asarray(photo.convert("L"))
    alpha = np.tile(np.linspace(40, 255, size[0]).astype(np.uint8), (size[1], 1))
    grey_alpha = Image.fromarray(np.dstack([grey, alpha]), "LA")
    after, outside, mode = _inpaint_outside(api, encode(grey_alpha), size)
    assert mode == "RGBA"  # the alpha is kept, deliberately (item 8)
    for channel in range(3):
        assert np.array_equal(after[..., channel][outside], grey[outside])
    assert np.array_equal(after[..., 3][outside], alpha[outside])

    one_bit = photo.convert("1")
    after, outside, mode = _inpaint_outside(api, encode(one_bit), size)
    assert mode == "RGB"
    expected = np.where(np.asarray(one_bit), 255, 0)
    for channel in range(3):
        assert np.array_equal(after[..., channel][outside], expected[outside])


def test_item_07_sixteen_bit_and_float_images_are_scaled_never_clipped(api):
    """7. 16-bit and float images → scaled correctly, never clipped."""
    size = (256, 48)
    ramp = np.tile(np.linspace(0, 65535, size[0]).round().astype(np.uint16), (size[1], 1))

    after, outside, mode = _inpaint_outside(api, encode(Image.fromarray(ramp)), size)
    assert mode == "RGB"
    expected = np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(after[..., 0][outside], expected[outside])
    assert len(np.unique(after[..., 0][outside])) > 200  # the whole range survives, not a band of white

    rgb16 = np.dstack([ramp, ramp[:, ::-1], np.full(ramp.shape, 32768, np.uint16)])
    ok, png16 = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV writes BGR
    assert ok
    after, outside, _ = _inpaint_outside(api, png16.tobytes(), size)
    expected = np.round(rgb16.astype(np.float64) * 255 / 65535)
    assert np.abs(after[..., :3][outside].astype(int) - expected[outside]).max() <= 1
    assert after[..., 2][outside].min() == after[..., 2][outside].max() == 128  # mid-grey stays mid-grey

    unit = (ramp / 65535).astype(np.float32)  # floats in [0, 1]
    after, outside, _ = _inpaint_outside(api, encode(Image.fromarray(unit, "F"), "TIFF"), size)
    assert np.abs(after[..., 0][outside].astype(int) - np.round(unit * 255)[outside]).max() <= 1
    hdr = unit * 4.0 + 1.0  # floats in [1, 5]: stretched to the full range, never clipped at 1.0
    after, outside, _ = _inpaint_outside(api, encode(Image.fromarray(hdr, "F"), "TIFF"), size)
    stretched = np.round((hdr - 1.0) / 4.0 * 255)
    assert np.abs(after[..., 0][outside].astype(int) - stretched[outside]).max() <= 1
    assert (after[..., 0][outside] == 255).sum() < size[1] * 3  # only the brightest column reaches white


def test_item_08_rgba_alpha_is_handled_deliberately_and_never_reaches_a_model_raw(api):
    """8. RGBA → alpha handled deliberately; never passed raw to a model."""
    # Left half opaque blue; right half fully transparent, hiding pure red in its colour channels. A model given
    # the raw RGB would fill the hole with red; composited deliberately, it sees the neutral background.
    size = (96, 64)
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[:, :48] = (0, 0, 255, 255)
    rgba[:, 48:] = (255, 0, 0, 0)
    box = (66, 24, 82, 40)
    response = api_inpaint(api, encode(Image.fromarray(rgba, "RGBA")), encode(box_mask(size, box)), mask_blur=0)
    assert response.status_code == 200, response.text
    result = Image.open(io.BytesIO(base64.b64decode(response.json()["image"])))
    assert result.mode == "RGBA"
    after = np.asarray(result)
    inside = np.zeros(size[::-1], bool)
    inside[box[1] : box[3], box[0] : box[2]] = True
    filled = after[inside][:, :3].astype(int)
    assert np.abs(filled - np.array(MODEL_BACKGROUND)).max() <= 3, filled.mean(axis=0)  # not red: never raw
    assert (after[inside][:, 3] == 255).all()  # what was painted is opaque
    assert np.array_equal(after[~inside], rgba[~inside])  # everything else: colour and alpha, byte for byte


def test_item_09_exif_rotated_photos_are_upright_before_hashing_and_size_checks(api):
    """9. EXIF-rotated photo → upright before hashing and size checks."""
    stored = np.zeros((40, 60, 3), np.uint8)  # landscape as the camera stored it
    stored[:10, :10] = (255, 0, 0)
    upright = np.rot90(stored, k=-1)  # what orientation 6 (rotate 90° clockwise) displays: 40 wide, 60 high
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated_png = encode(Image.fromarray(stored), exif=exif.tobytes())
    upright_mask = encode(box_mask((40, 60), (20, 40, 30, 50)))

    # The size rules see the upright image: a mask of the stored (sideways) shape is refused...
    status, code, message = error_of(api_inpaint(api, rotated_png, encode(box_mask((60, 40), (5, 5, 15, 15)))))
    assert (status, code) == (400, "bad_mask") and "the image is 40x60" in message, message
    # ...and one of the upright shape is used, giving an upright result.
    first = api_inpaint(api, rotated_png, upright_mask, mask_blur=0)
    assert first.status_code == 200 and first.json()["cached"] is False
    result = pixels(base64.b64decode(first.json()["image"]))
    assert result.shape[:2] == (60, 40)
    assert np.array_equal(result[:10, 30:], upright[:10, 30:])  # the red corner is top right now
    # The key comes from the upright pixels: the same photo already upright (no EXIF) is the same request.
    again = api_inpaint(api, encode(Image.fromarray(upright)), upright_mask, mask_blur=0)
    assert again.json()["cached"] is True
    assert again.json()["parameters"]["image_digest"] == first.json()["parameters"]["image_digest"]

    jpeg = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    from_jpeg = api_inpaint(api, jpeg, upright_mask)
    assert from_jpeg.status_code == 200 and pixels(base64.b64decode(from_jpeg.json()["image"])).shape[:2] == (60, 40)


@pytest.mark.parametrize("format", ["GIF", "WEBP"])
def test_item_10_animated_files_give_their_first_frame_deterministically(api, format):
    """10. Animated GIF/WebP → first frame, deterministically."""
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((240, 0, 0), (0, 0, 240), (0, 240, 0))]
    options = {"lossless": True} if format == "WEBP" else {}
    animated = encode(frames[0], format, save_all=True, append_images=frames[1:], duration=80, loop=0, **options)
    assert Image.open(io.BytesIO(animated)).n_frames == 3
    mask = encode(box_mask((64, 48), (24, 16, 40, 32)))
    first = api_inpaint(api, animated, mask, mask_blur=0)
    assert first.status_code == 200, first.text
    after = pixels(base64.b64decode(first.json()["image"]))
    assert np.abs(after[:10].reshape(-1, 3).astype(int) - (240, 0, 0)).max() <= 2  # the first frame's red
    again = api_inpaint(api, animated, mask, mask_blur=0)
    assert again.json()["cached"] is True and again.json()["image"] == first.json()["image"]


# ================================================================================================================
# 11: upload caps (a real `streamlit run Home.py`)
# ================================================================================================================

SERVER_API_KEY = "checklist-api-key"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory) -> Iterator[AppServer]:
    """`streamlit run Home.py` with an API key and a 1 MB API body cap."""
    env = {"PYTHONPATH": str(ROOT), "STUDIO_API_KEY": SERVER_API_KEY, "STUDIO_MAX_BODY_MB": "1"}
    with running_app(tmp_path_factory.mktemp("server"), env) as server:
        yield server


async def _uploads_through_a_session(url: str, sizes: list[int]) -> list[int]:
    """Open a browser-like session (websocket, XSRF cookie) and PUT one file of each size to the server's upload
    endpoint, as the file uploader does; returns the status codes."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await http.get("/_stcore/health")  # sets the XSRF cookie
        xsrf = http.cookies.get("_streamlit_xsrf")
        assert xsrf, "the server set no XSRF cookie"
        stream = url.replace("http://", "ws://") + "/_stcore/stream"
        async with websockets.connect(stream, subprotocols=["streamlit"], max_size=None) as socket_:
            rerun = BackMsg()
            rerun.rerun_script.query_string = ""
            rerun.rerun_script.page_script_hash = ""
            await socket_.send(rerun.SerializeToString())
            session_id = None
            while session_id is None:
                message = ForwardMsg()
                message.ParseFromString(await asyncio.wait_for(socket_.recv(), 60))
                if message.WhichOneof("type") == "new_session":
                    session_id = message.new_session.initialize.session_id
            codes = []
            for number, size in enumerate(sizes):
                response = await http.put(
                    f"/_stcore/upload_file/{session_id}/file-{number}",
                    files={"file": (f"photo-{number}.png", b"\x00" * size, "image/png")},
                    headers={"X-Xsrftoken": xsrf},
                )
                codes.append(response.status_code)
            return codes


@pytest.mark.slow
def test_item_11_uploads_over_the_cap_are_refused_by_the_server_and_by_the_api(app_server):
    """11. Upload over the cap → refused by the server (`server.maxUploadSize`) and by the API (413)."""
    url = app_server.url
    # .streamlit/config.toml sets 25 MB (Streamlit's own default is 200 MB): a 1 MB upload is taken, 26 MB refused.
    assert asyncio.run(_uploads_through_a_session(url, [1 * 2**20, 26 * 2**20])) == [204, 413]
    # The API of the same server: STUDIO_MAX_BODY_MB=1.
    key = {"Authorization": f"Bearer {SERVER_API_KEY}"}
    body = json.dumps({"model": "opencv-telea", "image": "A" * (2 * 2**20), "mask": "A"}).encode()
    response = httpx.post(f"{url}{API_PREFIX}/inpaint", content=body, headers={**key, "content-type": "application/json"}, timeout=60)
    status, code, message = error_of(response)
    assert (status, code) == (413, "body_too_large") and "1 MB" in message
    streamed = httpx.post(
        f"{url}{API_PREFIX}/inpaint",
        content=(b"x" * 65536 for _ in range(40)),  # 2.5 MB with no Content-Length: counted as it arrives
        headers={**key, "content-type": "application/json"},
        timeout=60,
    )
    assert streamed.status_code == 413


# ================================================================================================================
# 12-15: masks
# ================================================================================================================


def test_item_12_coloured_and_semi_transparent_strokes_make_the_mask_from_alpha(api, coffee):
    """12. Red, blue, semi-transparent strokes → mask from alpha, never empty by colour."""
    photo = small_photo(coffee)
    ellipse = (40, 20, 80, 60)
    reference = Image.new("L", photo.size, 0)
    ImageDraw.Draw(reference).ellipse(ellipse, fill=255)
    expected = api_inpaint(api, encode(photo), encode(reference), mask_blur=0)
    assert expected.status_code == 200
    strokes = {"red": (255, 0, 0, 255), "blue": (0, 0, 255, 255), "black": (0, 0, 0, 255), "faint": (255, 0, 0, 40)}
    for name, colour in strokes.items():
        stroke = Image.new("RGBA", photo.size, (0, 0, 0, 0))
        ImageDraw.Draw(stroke).ellipse(ellipse, fill=colour)
        response = api_inpaint(api, encode(photo), encode(stroke), mask_blur=0)
        assert response.status_code == 200, (name, response.text)
        # Exactly the painted shape, whatever its colour or opacity: the result of the white-on-black mask.
        assert response.json()["parameters"]["mask_digest"] == expected.json()["parameters"]["mask_digest"], name
        assert response.json()["image"] == expected.json()["image"], name


def test_item_13_an_empty_mask_gets_a_clear_message(tmp_path, coffee):
    """13. Empty mask → clear message."""
    photo = small_photo(coffee)
    image = tmp_path / "photo.png"
    image.write_bytes(encode(photo))
    masks_ = {
        "black.png": encode(Image.new("L", photo.size, 0)),
        "transparent.png": encode(Image.new("RGBA", photo.size, (255, 0, 0, 0))),
        "sliver.png": encode(box_mask(photo.size, (50, 10, 52, 70))),  # 2 px wide: nothing left once shrunk by 3
    }
    for name, data in masks_.items():
        (tmp_path / name).write_bytes(data)
        extra = ["--mask-grow", "-3"] if name == "sliver.png" else []
        out = tmp_path / f"out-{name}"
        line = cli_refusal(run_cli("inpaint", image, tmp_path / name, "--model", "opencv-telea", "-o", out, *extra))
        assert line == "error: the mask is empty: paint over the area to change", (name, line)
        assert not out.exists()
    assert store_is_empty()


def test_item_14_a_mask_of_another_size_is_resized_or_refused_with_a_message(tmp_path, coffee):
    """14. Mask size ≠ image size → resized or refused explicitly, with a message."""
    photo = small_photo(coffee)  # 120x80
    image = tmp_path / "photo.png"
    image.write_bytes(encode(photo))
    half = tmp_path / "half.png"
    half.write_bytes(encode(box_mask((60, 40), (20, 10, 30, 20))))  # same aspect, half the size
    full = tmp_path / "full.png"
    full.write_bytes(encode(box_mask(photo.size, (40, 20, 60, 40))))  # what the half-size mask means
    out_half, out_full = tmp_path / "from-half.png", tmp_path / "from-full.png"
    assert run_cli("inpaint", image, half, "--model", "opencv-telea", "--seed", "0", "-o", out_half).returncode == 0
    assert run_cli("inpaint", image, full, "--model", "opencv-telea", "--seed", "0", "-o", out_full).returncode == 0
    assert np.array_equal(pixels(out_half.read_bytes()), pixels(out_full.read_bytes()))
    assert not np.array_equal(pixels(out_half.read_bytes()), np.asarray(photo))

    other = tmp_path / "square.png"
    other.write_bytes(encode(box_mask((60, 60), (20, 20, 30, 30))))
    line = cli_refusal(run_cli("inpaint", image, other, "--model", "opencv-telea", "-o", tmp_path / "never.png"))
    assert "the mask is 60x60 but the image is 120x80" in line and "aspect ratio" in line, line
    assert not (tmp_path / "never.png").exists()


def _forge(strokes: list, how: str) -> object:
    forged = copy.deepcopy(strokes)
    if how == "points":
        forged[0]["points"] = "M 0 0 L 10 10"  # a string where the editor sends a list of points
    elif how == "far":
        forged[0]["points"][0] = [1e12, 0]  # coordinates no canvas has
    elif how == "tool":
        forged[0]["tool"] = "fill-everything"  # a tool the editor does not have
    elif how == "shape":
        forged = {"not": "a list of strokes"}  # not even the component's structure
    return forged


@pytest.mark.slow
@pytest.mark.parametrize("how", ["points", "far", "tool", "shape"])
def test_item_15_forged_canvas_data_is_refused_with_a_message(fresh_app, coffee, how):
    """15. Forged canvas data (wrong size, non-PNG) → refused."""
    forged = _forge(STROKES["rect"], how)
    at = upload_and_draw(open_page("2_Inpaint.py"), encode(coffee), forged)
    assert not at.exception, [exception.value for exception in at.exception]
    assert any("canvas" in error and ("malformed" in error or "aspect ratio" in error) for error in texts(at.error)), texts(at.error)
    runs = [widget for widget in at.button if widget.label == "Run"]
    assert not runs or runs[0].disabled
    assert services.queue().jobs() == []


def test_item_15_a_mask_that_is_not_an_image_is_refused_by_the_api(api, coffee):
    """15. Forged canvas data (wrong size, non-PNG) → refused."""
    photo = encode(small_photo(coffee))
    for forged in (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"GIF89a-not-really"):
        status, code, message = error_of(api_inpaint(api, photo, forged))
        assert (status, code) == (400, "bad_mask") and message.startswith("unusable mask"), message
    assert services.queue().jobs() == [] and store_is_empty()


# ================================================================================================================
# 16-17: parameters and prompts
# ================================================================================================================

BAD_PARAMETERS = [
    ("generate", {"num_inference_steps": 0}, "num_inference_steps"),
    ("generate", {"num_images": 0}, "num_images"),
    ("generate", {"guidance_scale": float("nan")}, "guidance_scale"),
    ("generate", {"guidance_scale": float("inf")}, "guidance_scale"),
    ("generate", {"seed": -1}, "seed"),
    ("generate", {"seed": 2**64}, "seed"),
    ("generate", {"width": 65}, "multiple of 8"),
    ("generate", {"height": 100}, "multiple of 8"),
    ("generate", {"prompt": ""}, "prompt is empty"),
    ("generate", {"prompt": "   "}, "prompt is empty"),
    ("inpaint", {"strength": 0.0}, "strength"),
    ("inpaint", {"strength": 1.5}, "strength"),
    ("inpaint", {"num_inference_steps": 0}, "num_inference_steps"),
    ("inpaint", {"seed": 2**64}, "seed"),
    ("inpaint", {"guidance_scale": float("nan")}, "guidance_scale"),
]


def test_item_16_bad_parameters_are_refused_before_any_model_call(tiny_catalogue, fresh_services, coffee):
    """16. steps 0, 0 images, NaN guidance, seed −1 or 2⁶⁴, strength 0 or > 1, odd sizes, empty prompt →
    refused before any model call."""
    queue, studio = services.queue(), services.studio()
    photo = small_photo(coffee)
    base = {
        "generate": GenerateRequest(model="tiny-sd", prompt="a lighthouse", width=64, height=64, num_inference_steps=2, seed=1),
        "inpaint": InpaintRequest(model="tiny-sd-inpaint", prompt="a lighthouse", image=photo, mask=box_mask(photo.size, (40, 20, 60, 40)), num_inference_steps=2, seed=1),
    }
    for task, changes, fragment in BAD_PARAMETERS:
        with pytest.raises(BadParameterError) as refused:
            queue.submit(dataclasses.replace(base[task], **changes), session="web-checklist", heartbeat=True)
        assert fragment in refused.value.message, (changes, refused.value.message)
    assert queue.jobs() == [] and studio.pool.resident() == [] and store_is_empty()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["generate", "a fox", "--guidance", "nan"], "guidance_scale"),
        (["generate", "a fox", "--seed", "-1"], "seed"),
        (["generate", "a fox", "--steps", "0"], "num_inference_steps"),
        (["generate", "a fox", "--width", "63"], "width"),
        (["generate", "", "--seed", "1"], "prompt is empty"),
    ],
)
def test_item_16_the_cli_refuses_them_before_looking_for_the_model(tmp_path, args, fragment):
    """16. steps 0, 0 images, NaN guidance, seed −1 or 2⁶⁴, strength 0 or > 1, odd sizes, empty prompt →
    refused before any model call."""
    # The model's files are missing: had the CLI gone near the model first, it would say so instead.
    models = tmp_path / "models.toml"
    models.write_text(diffusers_entry("gone-sd", tmp_path / "no-such-folder"), encoding="utf-8")
    out = tmp_path / "out.png"
    line = cli_refusal(run_cli(*args, "--model", "gone-sd", "-o", out, env=cli_env(STUDIO_MODELS_FILE=str(models))))
    assert fragment in line and "not available" not in line, line


LONG_PROMPT = " ".join(["a weathered lighthouse keeper with a lantern on a stormy cliff at dusk"] * 8)  # ~100 words


def test_item_17_long_prompts_warn_of_truncation_and_prompts_have_a_character_cap(tiny_catalogue, fresh_app, coffee):
    """17. Prompt over the text encoder's 77 tokens → truncation warning; a character cap."""
    at = open_inpaint_to_replace(encode(coffee), STROKES["rect"])
    at.text_area(key="inpaint.prompt").set_value("a small boat")
    at.run()
    assert not any("text encoder reads only" in warning for warning in texts(at.warning))
    at.text_area(key="inpaint.prompt").set_value(LONG_PROMPT)
    at.run()
    warnings_ = [warning for warning in texts(at.warning) if "text encoder reads only 77" in warning]
    assert warnings_ and "the end of it will be ignored" in warnings_[0]

    # The character cap: refused with the core's message when run, and nothing is queued.
    generate = open_page("1_Generate.py")
    generate.text_area(key="generate.prompt").set_value("a lighthouse " * 160)  # 2080 characters
    generate.run()
    click(generate, "Generate")
    assert any("characters; the limit is 2000" in error for error in texts(generate.error)), texts(generate.error)
    assert "generate.job" not in generate.session_state and services.queue().jobs() == []
    assert not at.exception and not generate.exception


# ================================================================================================================
# 18-23: the queue under load, cancels, caps and memory
# ================================================================================================================


@pytest.mark.slow
def test_item_18_concurrent_users_and_fast_reruns_are_serialised_and_identical_to_sequential_runs(tiny_catalogue, tiny_catalogue_file, make_api):
    """18. Concurrent users and fast reruns → serialised; output identical to sequential."""
    app = make_api().app
    users = [("10.0.1.1", 11), ("10.0.1.1", 11), ("10.0.1.2", 12), ("10.0.1.3", 13), ("10.0.1.4", 14), ("10.0.1.5", 12)]
    body = {"task": "generate", "model": "tiny-sd", "prompt": "a lighthouse at dusk", "width": 64, "height": 64, "num_inference_steps": 3}
    most_running = 0
    sampling = threading.Event()

    def sample() -> None:
        nonlocal most_running
        while not sampling.is_set():
            running = sum(1 for status in services.queue().jobs() if status.state is JobState.RUNNING)
            most_running = max(most_running, running)
            time.sleep(0.002)

    def user(host_and_seed: tuple[str, int]) -> tuple[str, int, str]:
        host, seed = host_and_seed
        client = TestClient(app, client=(host, 4000))
        created = client.post(f"{API_PREFIX}/jobs", json={**body, "seed": seed})
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        assert wait_for_status(client, job_id, {"done", "failed", "cancelled"})["status"] == "done"
        return job_id, seed, client.get(f"{API_PREFIX}/jobs/{job_id}/result").json()["images"][0]

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=len(users)) as pool:
            results = list(pool.map(user, users))
    finally:
        sampling.set()
        sampler.join()
    assert most_running <= 1  # one worker: never two runs at once
    # A user's rerun and another user's identical request joined the job already there.
    assert len({job_id for job_id, _, _ in results}) == 4
    # The same pixels as one run after the other on a studio with no cache at all.
    sequential = Studio(Catalogue.load(tiny_catalogue_file), ModelPool(1), None)
    for _, seed, image in results:
        alone = sequential.generate(GenerateRequest(**{key: value for key, value in body.items() if key != "task"}, seed=seed))
        assert np.array_equal(pixels(base64.b64decode(image)), np.asarray(alone.images[0])), seed


@pytest.mark.slow
def test_item_19_rerun_and_tab_close_during_a_run_reattach_or_abort_at_the_next_step(long_catalogue, fresh_app):
    """19. Rerun / tab close during a run → reruns reattach (never a second run); a closed tab's run aborts at its
    next step once abandoned; nothing cached."""
    at = open_page("1_Generate.py")
    job_id = start_a_long_run(at, "generate", model="tiny-sd", prompt="a lighthouse", button="Generate")
    queue, store = services.queue(), services.studio().store

    # Fast reruns (and a page switch and back) reattach to the running job: never a second run.
    for _ in range(3):
        at.run()
    at.switch_page("pages/2_Inpaint.py")
    at.run()
    at.switch_page("pages/1_Generate.py")
    at.run()
    session = at.session_state["studio.session"]
    assert at.session_state["generate.job"] == job_id
    assert [status.id for status in queue.jobs(session=session)] == [job_id]
    assert queue.status(job_id).state is JobState.RUNNING

    # The tab is closed: its websocket is gone, so the front-end's sweep no longer keeps its jobs.
    # Past the abandonment time the run stops at its next step.
    queue.abandon_after_s = 0.5
    closed_at = time.monotonic()
    time.sleep(0.6)
    queue.touch_sessions(sessions.connected())  # the sweep (no Streamlit server here: no session is connected)
    abandoned = queue.status(job_id)
    final = queue.wait(job_id, timeout=30)
    assert final.state is JobState.CANCELLED, final
    assert abandoned.state.finished or abandoned.cancel_requested, abandoned  # the sweep stopped it
    assert final.step <= abandoned.step + 1 < final.total  # at its next step, not at the end
    assert time.monotonic() - closed_at < 0.5 + 5
    assert final.key not in store


@pytest.mark.slow
def test_item_19_stop_on_the_inpaint_page_aborts_at_the_next_step_and_caches_nothing(long_catalogue, fresh_app, coffee):
    """19. Stop during a run → aborts at the next step; the page says it was cancelled; nothing cached."""
    at = open_inpaint_to_replace(encode(coffee), STROKES["rect"], model="tiny-sd-inpaint")
    job_id = start_a_long_run(at, "inpaint", model="tiny-sd-inpaint", prompt="a small boat", button="Run")
    queue = services.queue()
    click(at, "Cancel")
    stopped_at = queue.status(job_id)
    assert stopped_at.state.finished or stopped_at.cancel_requested, stopped_at
    run_until(at, lambda at: queue.status(job_id).state.finished, what="the run to stop")
    final = queue.status(job_id)
    assert final.state is JobState.CANCELLED and final.step <= stopped_at.step + 1 < final.total
    at.run()
    assert any("Cancelled" in warning for warning in texts(at.warning))
    assert not at.get("download_button")
    assert final.key not in services.studio().store


@pytest.mark.slow
def test_item_20_cancel_stops_the_job_caches_nothing_and_frees_the_worker(tiny_catalogue, make_api):
    """20. Cancel → job cancelled, not cached, worker free."""
    client = make_api()
    queue = services.queue()
    running = client.post(f"{API_PREFIX}/jobs", json=long_job(1)).json()["id"]
    waiting = client.post(f"{API_PREFIX}/jobs", json=long_job(2)).json()["id"]
    wait_for_a_step(client, running)

    cancelled_waiting = client.delete(f"{API_PREFIX}/jobs/{waiting}").json()
    assert cancelled_waiting["status"] == "cancelled"  # queued: cancelled at once
    assert client.delete(f"{API_PREFIX}/jobs/{running}").json()["cancel_requested"] is True
    final = wait_for_status(client, running, {"done", "failed", "cancelled"}, timeout_s=30)
    assert final["status"] == "cancelled" and final["step"] < final["total"]
    for job_id in (running, waiting):
        assert error_of(client.get(f"{API_PREFIX}/jobs/{job_id}/result"))[:2] == (409, "cancelled")
        assert queue.status(job_id).key not in services.studio().store
    assert store_is_empty()

    # The worker is free: a new job starts at once and finishes.
    started = time.monotonic()
    short = {"model": "tiny-sd", "prompt": "a dot", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 3}
    done = client.post(f"{API_PREFIX}/generate", json=short)
    assert done.status_code == 200 and time.monotonic() - started < 20
    # The cancelled request, sent again, runs afresh rather than joining the dead job.
    again = client.post(f"{API_PREFIX}/jobs", json=long_job(1)).json()
    assert again["id"] != running and again["status"] in ("queued", "running")
    client.delete(f"{API_PREFIX}/jobs/{again['id']}")


def test_item_21_huge_sizes_and_batches_are_refused_by_caps_with_a_message(tmp_path, api):
    """21. 4096² generation or a huge batch → refused by caps with a message."""
    out = tmp_path / "out.png"
    line = cli_refusal(run_cli("generate", "a fox", "--model", "sd-turbo", "--width", "4096", "--height", "4096", "-o", out))
    assert "width must be a whole number from 64 to 1024, got 4096" in line, line
    line = cli_refusal(run_cli("generate", "a fox", "--model", "sd-turbo", "--num-images", "100", "-o", out))
    assert "num_images must be a whole number from 1 to 4, got 100" in line, line
    status, code, message = error_of(api.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "a fox", "width": 4096, "height": 4096}))
    assert (status, code) == (400, "bad_parameter") and "1024" in message
    status, code, message = error_of(api.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "a fox", "num_images": 64}))
    assert (status, code) == (400, "bad_parameter") and "num_images" in message
    assert not out.exists() and store_is_empty()


OUT_OF_MEMORY_SCRIPT = """
import json, resource, sys
from starlette.applications import Starlette
from starlette.testclient import TestClient
from core.api import api_routes

def address_space():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize"):
            return int(line.split()[1]) * 1024

def body(seed, side, count=1):
    return {"model": "tiny-sd", "prompt": "a lighthouse", "width": side, "height": side, "num_images": count,
            "num_inference_steps": 1, "seed": seed}

with TestClient(Starlette(routes=api_routes())) as client:
    warm = client.post("/api/v1/generate", json=body(1, 64))  # model loaded, threads started
    assert warm.status_code == 200, warm.text
    # The cap: 64 MB more address space than this process already has. A 64 px image needs a few MB;
    # four 512 px images need hundreds.
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + 64 * 2**20, resource.RLIM_INFINITY))
    big = client.post("/api/v1/generate", json=body(2, 512, 4))
    # An upload whose decode alone is over the cap: 40 KB of PNG that decodes to 6000x4000 (24 MP, ~100 MB as RGB).
    wide = client.post("/api/v1/inpaint", json={"model": "opencv-telea", "image": sys.argv[1], "mask": sys.argv[2]})
    after = client.post("/api/v1/generate", json=body(3, 64))
    health = client.get("/api/v1/health")
    print(json.dumps({"big": [big.status_code, big.json()], "wide": [wide.status_code, wide.json()],
                      "after": after.status_code, "health": health.status_code}))
"""


@pytest.mark.slow
def test_item_22_running_out_of_memory_fails_the_job_with_advice_and_the_app_keeps_working(tiny_catalogue, tmp_path):
    """22. Out of memory (simulate by a cap) → job fails with "lower the size/steps", the app keeps working.
    Both where memory runs out: in a model's run, and in decoding an upload (a small file, a huge image)."""
    script = tmp_path / "out_of_memory.py"
    script.write_text(OUT_OF_MEMORY_SCRIPT, encoding="utf-8")
    image, mask = b64(grey_png_of_zeros(6000, 4000)), b64(encode(box_mask((60, 40), (10, 10, 20, 20))))
    command = [sys.executable, str(script), image, mask]
    completed = subprocess.run(command, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    status, body = outcome["big"]
    assert status == 503, body
    if body["error"]["code"] == "model_unavailable":  # the memory budget reads the cap: refused before running
        assert "this host has" in body["error"]["message"], body
    else:  # or the run itself ran out
        assert body["error"]["code"] == "out_of_memory", body
        assert "lower the size, steps or number of images" in body["error"]["message"]
    status, body = outcome["wide"]
    assert (status, body["error"]["code"]) == (503, "out_of_memory"), body
    assert "not enough memory to decode this image now" in body["error"]["message"]
    assert outcome["after"] == 200 and outcome["health"] == 200


@pytest.mark.slow
def test_item_23_a_request_flood_gets_busy_429_at_once(tiny_catalogue, make_api, monkeypatch):
    """23. Request flood → bounded queue answers "busy" (429) at once."""
    monkeypatch.setenv("STUDIO_MAX_QUEUE", "2")
    app = make_api().app

    def send(number: int) -> tuple[int, float, str | None, str | None]:
        client = TestClient(app, client=(f"10.0.2.{number}", 4000))
        started = time.monotonic()
        response = client.post(f"{API_PREFIX}/jobs", json=long_job(100 + number))
        job_id = response.json()["id"] if response.status_code == 202 else None
        return response.status_code, time.monotonic() - started, response.headers.get("retry-after"), job_id

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(send, range(1, 25)))
    accepted = [answer for answer in answers if answer[0] == 202]
    refused = [answer for answer in answers if answer[0] == 429]
    assert len(accepted) + len(refused) == len(answers), [answer[0] for answer in answers]
    assert 2 <= len(accepted) <= 3  # two waiting, and perhaps one already running
    assert all(int(retry_after) >= 1 for _, _, retry_after, _ in refused)
    assert max(elapsed for _, elapsed, _, _ in refused) < 5  # answered at once, never after a wait
    assert TestClient(app).get(f"{API_PREFIX}/health").json()["queue_length"] <= 2
    for number, (_, _, _, job_id) in enumerate(answers, start=1):
        if job_id is not None:
            TestClient(app, client=(f"10.0.2.{number}", 4000)).delete(f"{API_PREFIX}/jobs/{job_id}")


@pytest.mark.slow
def test_item_23_a_flood_of_small_uploads_of_huge_images_is_refused_before_decoding(make_api, monkeypatch):
    """23. Request flood → bounded queue answers "busy" (429) at once; with uploads, before decoding them: one
    client's 12 requests of 62 KB, each a 48 MP image, decode only as many images as the client has places."""
    from core import images

    monkeypatch.setenv("STUDIO_MAX_JOBS_PER_SESSION", "3")
    app = make_api().app
    huge, mask = b64(grey_png_of_zeros(8000, 6000)), b64(encode(box_mask((80, 60), (10, 10, 20, 20))))
    decoded, real_load = [], images.load_image

    def counting_load(source, *limits):
        image = real_load(source, *limits)
        decoded.append(image.size)
        return image

    monkeypatch.setattr(images, "load_image", counting_load)

    def send(number: int) -> tuple[int, str | None]:
        client = TestClient(app, client=("10.0.3.1", 4000))
        body = {"task": "inpaint", "model": "opencv-telea", "image": huge, "mask": mask, "padding": number}
        response = client.post(f"{API_PREFIX}/jobs", json=body)
        return response.status_code, response.json().get("id")

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(send, range(12)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202] * 3 + [429] * 9, statuses
    assert decoded == [(8000, 6000)] * 3  # the 9 refused were never decoded
    for _, job_id in answers:
        if job_id is not None:
            TestClient(app, client=("10.0.3.1", 4000)).delete(f"{API_PREFIX}/jobs/{job_id}")


# ================================================================================================================
# 24-26: the result store
# ================================================================================================================


@pytest.mark.slow
def test_item_24_a_process_killed_mid_cache_write_leaves_no_torn_entry_and_its_orphan_is_swept(tmp_path):
    """24. Process killed mid cache write (subprocess + SIGKILL) → no torn file; orphans swept."""
    noise = np.random.default_rng(24).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    image = tmp_path / "noise.png"
    Image.fromarray(noise).save(image, compress_level=1)  # a ~4 MB result: its write takes a moment
    mask = tmp_path / "mask.png"
    mask.write_bytes(encode(box_mask((1200, 1200), (500, 500, 540, 540))))
    temp = results_dir() / ".tmp"

    def partial_writes() -> list[Path]:
        try:
            return [leftover for leftover in temp.iterdir() if leftover.is_dir() and any(leftover.iterdir())]
        except FileNotFoundError:
            return []

    caught = None
    for attempt in range(8):  # the kill must land inside the write; rarely, the write is quicker than the poll
        out = tmp_path / f"out-{attempt}.png"
        noise[0, 0, 0] = attempt  # another photo each attempt, so each is a miss (OpenCV ignores the seed)
        image = tmp_path / f"noise-{attempt}.png"
        Image.fromarray(noise).save(image, compress_level=1)
        args = ["inpaint", str(image), str(mask), "--model", "opencv-telea", "-o", str(out)]
        writer = subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        leftovers: list[Path] = []
        while writer.poll() is None and time.monotonic() < deadline and not leftovers:
            leftovers = partial_writes()
        if leftovers:
            writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        key = leftovers[0].name.split(".")[0] if leftovers else None
        if writer.returncode == -signal.SIGKILL and key and not (results_dir() / key[:2] / key).exists():
            caught = (key, args, out)
            break
        # A missed attempt (its write was quicker than the poll) published its photo's result: start the next
        # one from an empty store, so what is checked below is the killed attempt's alone.
        shutil.rmtree(results_dir(), ignore_errors=True)
    assert caught is not None, "never managed to kill the CLI in the middle of its cache write"
    key, args, out = caught

    # No torn entry: the key is not served, nothing is published, the output was never written.
    store = ResultStore(results_dir(), 1 << 30)
    assert store.get(key) is None and published_entries() == [] and store.total_bytes() == 0
    assert not out.exists()
    orphans = [leftover for leftover in temp.iterdir() if leftover.name.startswith(key)]
    assert len(orphans) == 1

    # The next run computes the result again; the fresh orphan (it could be a live writer) is left alone...
    rerun = run_cli(*args)
    assert rerun.returncode == 0 and "cache hit" not in rerun.stderr, rerun.stderr
    assert out.exists() and orphans[0].exists()
    # ...and once it is old, the next process to open the store sweeps it.
    two_hours_ago = time.time() - 7200
    os.utime(orphans[0], (two_hours_ago, two_hours_ago))
    served = run_cli(*args)
    assert served.returncode == 0 and "cache hit" in served.stderr
    assert not orphans[0].exists()
    assert [entry.name for entry in published_entries()] == [key]


def _first_entry_file(name: str) -> Path:
    entries = published_entries()
    assert len(entries) == 1, entries
    return entries[0] / name


def test_item_25_a_corrupt_cache_entry_is_a_miss_recomputed_and_nothing_is_pickled(tmp_path, coffee):
    """25. Corrupt cache entry → treated as a miss and recomputed; no pickle anywhere."""
    image, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    image.write_bytes(encode(small_photo(coffee)))
    mask.write_bytes(encode(box_mask((120, 80), (40, 20, 70, 50))))
    out = tmp_path / "out.png"
    args = ["inpaint", image, mask, "--model", "opencv-ns", "--seed", "7", "-o", out]

    first = run_cli(*args)
    assert first.returncode == 0 and "cache hit" not in first.stderr
    original = out.read_bytes()
    damages = {
        "0.png": lambda data: data[:-20] + bytes(20),  # the PNG's tail zeroed
        "meta.json": lambda data: data[: len(data) // 2],  # the record cut in half
    }
    for name, damage in damages.items():
        target = _first_entry_file(name)
        target.write_bytes(damage(target.read_bytes()))
        out.unlink()
        recomputed = run_cli(*args)
        assert recomputed.returncode == 0 and "cache hit" not in recomputed.stderr, (name, recomputed.stderr)
        assert out.read_bytes() == original, name
    assert "cache hit" in run_cli(*args).stderr  # stored whole again

    # Nothing in the store can be unpickled: every file is a PNG, JSON, or the (empty) lock file.
    for path in results_dir().rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        assert not data.startswith(b"\x80"), f"{path.name} looks like a pickle"
        if path.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE)
        elif path.name != ".lock":
            json.loads(data)


def _queue_run(request) -> bool:
    """Run a request through the shared queue; returns whether it was served from the store."""
    queue = services.queue()
    status = queue.wait(queue.submit(request, session="checklist"), timeout=120)
    assert status.state is JobState.DONE, status
    return status.cached


def test_item_26_changing_any_one_parameter_or_the_seed_misses_the_cache(tiny_catalogue, fresh_services, coffee):
    """26. Cache key completeness → changing any one parameter, the model revision or the seed misses."""
    photo = small_photo(coffee)
    mask = box_mask(photo.size, (40, 20, 70, 50))
    changed_photo = photo.copy()
    changed_photo.putpixel((0, 0), (0, 0, 0))
    changed_mask = mask.copy()
    changed_mask.putpixel((100, 70), 255)
    # A diffusion model: every field changes its output (an engine that ignores the seed, as OpenCV does, may
    # rightly share one entry across seeds).
    base = InpaintRequest(model="tiny-sd-inpaint", prompt="a boat", image=photo, mask=mask, seed=1, num_inference_steps=2, guidance_scale=1.0)
    inpaint_changes = {
        "model": "tiny-sd",
        "prompt": "a red boat",
        "negative_prompt": "blur",
        "num_inference_steps": 3,
        "guidance_scale": 2.0,
        "seed": 2,
        "scheduler": "DDIM",
        "image": changed_photo,
        "mask": changed_mask,
        "strength": 0.5,
        "mask_blur": 5,
        "mask_grow": 2,
        "invert_mask": True,
        "padding": 8,
        "whole_image": True,
    }
    # The decoder choice needs a model with a tiny autoencoder, which the tiny catalogue lacks: its key and pixels
    # are checked in tests/test_decoders.py (test_each_decoder_repeats_its_pixels_and_the_two_differ_in_pixels_and_key).
    covered_elsewhere = {"decoder"}
    assert set(inpaint_changes) | covered_elsewhere == {field.name for field in dataclasses.fields(InpaintRequest)}
    assert _queue_run(base) is False and _queue_run(base) is True
    for name, value in inpaint_changes.items():
        assert _queue_run(dataclasses.replace(base, **{name: value})) is False, name

    generate = GenerateRequest(model="tiny-sd", prompt="a lighthouse", width=64, height=64, num_inference_steps=1, guidance_scale=1.0, seed=1)
    generate_changes = {
        "prompt": "a lighthouse at night",
        "negative_prompt": "fog",
        "num_inference_steps": 2,
        "guidance_scale": 2.0,
        "seed": 2,
        "scheduler": "Euler",
        "width": 72,
        "height": 72,
        "num_images": 2,
    }
    covered = set(generate_changes) | {"model"} | covered_elsewhere  # another model: checked above and with the revision below
    assert covered == {field.name for field in dataclasses.fields(GenerateRequest)}
    assert _queue_run(generate) is False and _queue_run(generate) is True
    for name, value in generate_changes.items():
        assert _queue_run(dataclasses.replace(generate, **{name: value})) is False, name
    assert _queue_run(base) is True and _queue_run(generate) is True  # the originals are still there


HUB_REPO = "checklist/tiny-sd"


def _hub_catalogue(path: Path, revision: str) -> Path:
    path.write_text(
        "[models.hub-sd]\n"
        'name = "Tiny SD from the hub (test)"\n'
        'tasks = ["txt2img"]\n'
        'engine = "diffusers"\n'
        f'hub = "{HUB_REPO}"\n'
        f'revision = "{revision}"\n'
        "working_resolution = 64\nsize_multiple = 8\nmax_side = 512\ndefault_steps = 1\ndefault_guidance = 7.5\n",
        encoding="utf-8",
    )
    return path


def test_item_26_a_new_model_revision_misses_the_cache(tiny_pipeline_dirs, fresh_services, tmp_path, monkeypatch):
    """26. Cache key completeness → changing any one parameter, the model revision or the seed misses."""
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    repo = hub / f"models--{HUB_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "snapshots").mkdir()
    for revision, commit in (("rev-a", "a" * 40), ("rev-b", "b" * 40)):
        (repo / "refs" / revision).write_text(commit)
        (repo / "snapshots" / commit).symlink_to(tiny_pipeline_dirs["txt2img"], target_is_directory=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    models = tmp_path / "models.toml"
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(_hub_catalogue(models, "rev-a")))
    request = GenerateRequest(model="hub-sd", prompt="a lighthouse", width=64, height=64, seed=5)

    services.reset()
    assert _queue_run(request) is False and _queue_run(request) is True
    _hub_catalogue(models, "rev-b")
    services.reset()
    assert _queue_run(request) is False  # same files even, but another revision: a miss
    _hub_catalogue(models, "rev-a")
    services.reset()
    assert _queue_run(request) is True


# ================================================================================================================
# 27-28: models
# ================================================================================================================


class _Trap:
    """Unpickling this creates the file at `marker`: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _copy_pipeline(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("model", ["/etc", "../x", "../../etc/passwd", "~root"])
def test_item_27_path_like_model_ids_are_refused_by_the_cli(tmp_path, model):
    """27. Model ids `/etc`, `../x`, `.bin`-only repo, remote-code repo → refused; `use_safetensors=True`."""
    line = cli_refusal(run_cli("generate", "a fox", "--model", model, "--seed", "1", "-o", tmp_path / "out.png"))
    assert "not a diffusers pipeline" in line or "unknown model" in line, line
    assert "passwd" not in line and "root" not in line
    assert not (tmp_path / "out.png").exists()


def test_item_27_pickle_only_and_remote_code_models_are_refused_and_pickles_are_never_loaded(tiny_pipeline_dirs, make_api, tmp_path, monkeypatch):
    """27. Model ids `/etc`, `../x`, `.bin`-only repo, remote-code repo → refused; `use_safetensors=True`."""
    marker = tmp_path / "a-pickle-was-loaded"
    trap = pickle.dumps(_Trap(marker))
    source = tiny_pipeline_dirs["txt2img"]

    bin_only = _copy_pipeline(source, tmp_path / "bin-only")
    for weights in (bin_only / "unet").glob("*.safetensors"):
        weights.unlink()
    (bin_only / "unet" / "diffusion_pytorch_model.bin").write_bytes(trap)

    remote = _copy_pipeline(source, tmp_path / "remote-code")
    index = json.loads((remote / "model_index.json").read_text())
    index["unet"] = ["my_custom_unet", "MyUNet2DConditionModel"]
    (remote / "model_index.json").write_text(json.dumps(index))

    both = _copy_pipeline(source, tmp_path / "both-formats")  # safetensors, and a booby-trapped .bin beside them
    for folder in ("unet", "vae", "text_encoder"):
        (both / folder / ("pytorch_model.bin" if folder == "text_encoder" else "diffusion_pytorch_model.bin")).write_bytes(trap)

    models = tmp_path / "models.toml"
    models.write_text("".join(diffusers_entry(model_id, folder) for model_id, folder in [("bin-only", bin_only), ("remote-code", remote), ("both-formats", both)]))
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(models))
    client = make_api()
    request = {"prompt": "a lighthouse", "width": 64, "height": 64, "num_inference_steps": 1, "seed": 1}

    status, code, message = error_of(client.post(f"{API_PREFIX}/generate", json={"model": "bin-only", **request}))
    assert (status, code) == (503, "model_unavailable") and "only safetensors are loaded" in message
    status, code, message = error_of(client.post(f"{API_PREFIX}/generate", json={"model": "remote-code", **request}))
    assert (status, code) == (503, "model_unavailable") and "remote code is never run" in message
    served = client.post(f"{API_PREFIX}/generate", json={"model": "both-formats", **request})
    assert served.status_code == 200, served.text
    assert not marker.exists(), "a pickled weights file was loaded"


@pytest.mark.slow
def test_item_28_many_models_never_more_resident_than_configured(tiny_pipeline_dirs, make_api, tmp_path, monkeypatch, coffee):
    """28. Many distinct model ids → never more than the configured number resident."""
    opencv = "".join(
        f'\n[models.cv-{number}]\nname = "OpenCV {number}"\ntasks = ["inpaint"]\nengine = "opencv"\n'
        f"working_resolution = 0\nsize_multiple = 1\ndefault_steps = 1\ndefault_guidance = 0.0\n"
        f'options = {{ method = "telea", radius = {number} }}\n'
        for number in range(1, 6)
    )
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(catalogue_file(tmp_path, tiny_pipeline_dirs, extra=opencv)))
    monkeypatch.setenv("STUDIO_MAX_RESIDENT_MODELS", "2")
    client = make_api()
    pool = services.studio().pool
    photo, mask = encode(small_photo(coffee)), encode(box_mask((120, 80), (40, 20, 70, 50)))
    order = ["tiny-sd-inpaint", "cv-1", "tiny-sd", "cv-2", "cv-3", "tiny-sd-inpaint", "cv-4", "tiny-sd", "cv-5", "cv-1"]
    for number, model in enumerate(order):
        fields = {"prompt": "a boat", "num_inference_steps": 1} if model.startswith("tiny") else {}
        response = api_inpaint(client, photo, mask, model=model, mask_blur=number, **fields)  # never a cache hit
        assert response.status_code == 200, (model, response.text)
        resident = pool.resident()
        assert len(resident) <= 2 and resident[-1] == model, (model, resident)
    assert pool.resident() == ["cv-5", "cv-1"]


# ================================================================================================================
# 29: ZIPs
# ================================================================================================================


def _zip(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.slow
def test_item_29_hostile_zips_never_name_an_output_and_are_capped(fresh_services, tmp_path, coffee):
    """29. ZIP with `../`, absolute paths, duplicates, or a zip bomb → hostile names are skipped with a note and
    never become an output name (the batch writes no files: its results leave as a ZIP of safe names); caps on
    count, size, the compression ratio of every entry and the bytes read."""
    photo = encode(small_photo(coffee))
    hostile = _zip(
        [
            ("photo.png", photo),
            ("photo.png", photo),  # a duplicate name
            ("../escaped.png", photo),
            ("../../escaped-further.png", photo),
            ("nested/../../escaped-nested.png", photo),
            (str(tmp_path / "absolute-target.png"), photo),
            ("C:\\Windows\\escaped-drive.png", photo),
        ]
    )

    files, notes = batch.read_zip(hostile)
    assert [file.name for file in files] == ["photo.png", "photo.png"]
    assert len([note for note in notes if "outside the archive" in note]) == 5, notes
    mask = batch.NamedFile("mask.png", encode(box_mask((120, 80), (40, 20, 70, 50))))
    run = batch.BatchRun(batch.match_items(files, shared_mask=mask), InpaintRequest(model="opencv-telea", seed=0))
    queue = services.queue()
    deadline = time.monotonic() + 60
    while not run.finished(queue):
        run.submit_more(queue, "web-checklist", in_flight=2)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    results = run.results()
    packed = zipfile.ZipFile(io.BytesIO(batch.results_zip(results, run.problems())))
    assert packed.namelist() == ["photo.png", "photo (2).png"]  # duplicates renamed; no hostile name survives

    # Caps: the number of files, the declared size, the bytes actually read, and the compression ratio.
    too_many = _zip([(f"image-{number}.png", b"x") for number in range(201)], zipfile.ZIP_STORED)
    with pytest.raises(BadParameterError, match="holds 201 files; the limit is 200"):
        batch.read_zip(too_many)
    bomb = _zip([("bomb.png", bytes(20 * 2**20))])  # 20 MB of zeros in ~20 KB
    assert len(bomb) < 100_000
    started = time.monotonic()
    with pytest.raises(BadParameterError, match="like a zip bomb"):
        batch.read_zip(bomb)
    assert time.monotonic() - started < 1  # refused from the header, nothing unpacked
    small_bombs = _zip([(f"part-{number}.png", bytes(2**20)) for number in range(200)])  # 200 MB in 1 MB entries
    assert len(small_bombs) < 300_000
    with pytest.raises(BadParameterError, match="like a zip bomb"):
        batch.read_zip(small_bombs)
    lying = bytearray(_zip([("small.png", bytes(3 * 2**20))]))  # declares 10 bytes but holds 3 MB
    central = bytes(lying).rindex(b"PK\x01\x02")
    lying[central + 24 : central + 28] = struct.pack("<I", 10)
    local = bytes(lying).index(b"PK\x03\x04")
    lying[local + 22 : local + 26] = struct.pack("<I", 10)
    files, notes = batch.read_zip(bytes(lying))
    assert files == [] and notes == ["small.png: skipped (damaged in the ZIP)"]
    too_large = _zip([(f"big-{number}.png", bytes(22 * 2**20)) for number in range(20)])  # 440 MB declared
    with pytest.raises(BadParameterError, match="the limit is 400 MB"):
        batch.read_zip(too_large)


# ================================================================================================================
# 30-32: errors, the safety checker, the API
# ================================================================================================================


@pytest.fixture
def broken_pipeline(tiny_pipeline_dirs, tmp_path) -> Path:
    """A pipeline that loads but fails inside diffusers when run (a scheduler trained on one timestep)."""
    folder = _copy_pipeline(tiny_pipeline_dirs["txt2img"], tmp_path / "secret-models" / "broken-sd")
    config_file = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config["num_train_timesteps"] = 1
    config_file.write_text(json.dumps(config))
    return folder


def test_item_30_an_unexpected_failure_is_one_generic_line_and_details_stay_in_the_log(broken_pipeline, make_api, tmp_path, monkeypatch, caplog):
    """30. Any unexpected exception → one generic line to the user, details only in the server log;
    no token, path or traceback in responses."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)
    models = tmp_path / "models.toml"
    models.write_text(diffusers_entry("broken-sd", broken_pipeline))
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(models))
    client = make_api()
    response = client.post(f"{API_PREFIX}/generate", json={"model": "broken-sd", "prompt": "a lighthouse", "seed": 1})
    status, code, message = error_of(response)
    assert status == 500 and code == "engine_error"
    assert "server log" in message
    for secret in (SECRET_TOKEN, "secret-models", str(tmp_path), "Traceback", "File "):
        assert secret not in response.text
    assert "Traceback" in caplog.text and "IndexError" in caplog.text  # the details, for the operator
    assert SECRET_TOKEN not in caplog.text
    assert client.get(f"{API_PREFIX}/health").status_code == 200  # still serving


def test_item_30_an_unexpected_failure_is_one_generic_line_on_every_entry_point(fresh_app, tmp_path, monkeypatch, coffee, caplog, capsys):
    """30. Any unexpected exception → one generic line to the user, details only in the server log;
    no token, path or traceback in responses. (An unwritable store is no longer such a failure: it degrades to
    "results are not kept"; see tests/test_api_hostile.py. Here the studio itself fails, as a bug would.)"""
    secret_place = tmp_path / "secret-place"
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)

    def broken(*args, **kwargs):
        raise RuntimeError(f"cannot open {secret_place} with token {SECRET_TOKEN}")

    monkeypatch.setattr(Studio, "from_settings", broken)

    # The API: a 500 with one generic line; the traceback in the log.
    caplog.set_level(logging.INFO)
    services.reset()
    # (As a real server would: the error goes to the log, the client gets the 500; not raised into the test.)
    response = TestClient(Starlette(routes=api_routes()), raise_server_exceptions=False).get(f"{API_PREFIX}/models")
    status, code, message = error_of(response)
    assert (status, code) == (500, "internal")
    assert "secret-place" not in response.text and SECRET_TOKEN not in response.text
    assert "RuntimeError" in caplog.text

    # The CLI: one line, exit 1; details only with --verbose.
    from core.cli import main as cli_main

    image, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    image.write_bytes(encode(small_photo(coffee)))
    mask.write_bytes(encode(box_mask((120, 80), (40, 20, 70, 50))))
    capsys.readouterr()
    assert cli_main(["inpaint", str(image), str(mask), "--model", "opencv-telea", "-o", str(tmp_path / "out.png")]) == 1
    assert capsys.readouterr().err.strip() == "error: something went wrong; run again with --verbose for the details"

    # A page: Streamlit's redacted notice (client.showErrorDetails = "none"), never the traceback.
    services.reset()
    at = open_page()
    shown = [exception for exception in at.exception]
    assert shown, "the broken studio should have surfaced"
    for exception in shown:
        assert not exception.stack_trace
        assert "secret-place" not in exception.value and SECRET_TOKEN not in exception.value


@pytest.mark.slow
def test_item_31_the_safety_checker_stays_on_reports_filtered_images_and_only_the_operator_turns_it_off(safety_pipelines, make_api, fresh_app, tmp_path, monkeypatch):
    """31. NSFW filter: where the model ships a safety checker, it stays on by default and a filtered image is
    reported as filtered (configurable by the operator, not the end user)."""
    models = tmp_path / "models.toml"
    models.write_text(diffusers_entry("flags-all", safety_pipelines["flag_all"]) + diffusers_entry("flags-none", safety_pipelines["flag_none"]))
    monkeypatch.setenv("STUDIO_MODELS_FILE", str(models))
    monkeypatch.delenv("STUDIO_SAFETY_CHECKER", raising=False)
    request = {"prompt": "a lighthouse", "width": 64, "height": 64, "num_inference_steps": 1, "seed": 4}
    client = make_api()

    flagged = client.post(f"{API_PREFIX}/generate", json={"model": "flags-all", **request})
    assert flagged.status_code == 200 and flagged.json()["parameters"]["filtered"] == [True]
    again = client.post(f"{API_PREFIX}/generate", json={"model": "flags-all", **request})
    assert again.json()["cached"] is False and again.json()["parameters"]["filtered"] == [True]  # never stored
    clean = client.post(f"{API_PREFIX}/generate", json={"model": "flags-none", **request})
    assert clean.json()["parameters"]["filtered"] == [False]
    # An end user cannot ask for it to be off.
    status, code, _ = error_of(client.post(f"{API_PREFIX}/generate", json={"model": "flags-all", "safety_checker": False, **request}))
    assert (status, code) == (422, "invalid_request")

    # The page says so, and offers no download of a filtered image.
    at = open_page("1_Generate.py")
    at.selectbox(key="generate.model").set_value("flags-all")
    at.text_area(key="generate.prompt").set_value("a lighthouse")
    at.run()
    click(at, "Generate")
    run_until(at, lambda at: any("Seed" in text for text in texts(at.markdown)), what="the result")
    assert any("hidden by the safety checker" in caption for image in at.get("image") for caption in image.captions)
    assert not at.get("download_button")

    # The operator can turn it off.
    monkeypatch.setenv("STUDIO_SAFETY_CHECKER", "0")
    client = make_api()
    unfiltered = client.post(f"{API_PREFIX}/generate", json={"model": "flags-all", **request})
    assert unfiltered.status_code == 200 and unfiltered.json()["parameters"]["filtered"] == [False]


@pytest.mark.slow
def test_item_32_the_api_shares_the_pages_queue_and_lock_with_auth_body_cap_429_and_503(long_catalogue, fresh_app, monkeypatch):
    """32. API: auth, body cap, same queue and lock, 429/503 when full."""
    monkeypatch.setenv("STUDIO_MAX_QUEUE", "1")
    monkeypatch.setenv("STUDIO_MAX_BODY_MB", "1")
    monkeypatch.setenv("STUDIO_API_KEY", "the-key")
    at = open_page("1_Generate.py")
    page_job = start_a_long_run(at, "generate", model="tiny-sd", prompt="a lighthouse", button="Generate")
    queue = services.queue()
    client = TestClient(Starlette(routes=api_routes()))  # over the same process-wide services as the page
    key = {"Authorization": "Bearer the-key"}

    # Auth.
    assert client.get(f"{API_PREFIX}/health").status_code == 200
    assert error_of(client.get(f"{API_PREFIX}/models"))[:2] == (401, "unauthorized")
    assert error_of(client.get(f"{API_PREFIX}/models", headers={"Authorization": "Bearer nope"}))[:2] == (401, "unauthorized")
    assert client.get(f"{API_PREFIX}/models", headers=key).status_code == 200
    # The body cap.
    big = {"model": "opencv-telea", "image": "A" * (2 * 2**20), "mask": "A"}
    assert error_of(client.post(f"{API_PREFIX}/inpaint", json=big, headers=key))[:2] == (413, "body_too_large")
    # Same queue, same lock: the API's job waits behind the page's run.
    short = {"task": "generate", "model": "tiny-sd", "prompt": "a dot", "width": 64, "height": 64, "num_inference_steps": 1, "seed": 9}
    waiting = client.post(f"{API_PREFIX}/jobs", json=short, headers=key)
    assert waiting.status_code == 202 and waiting.json()["position"] == 1
    assert queue.status(page_job).state is JobState.RUNNING
    assert client.get(f"{API_PREFIX}/health").json()["queue_length"] == 1
    # Full: 429 with when to retry, before any work is done for the request (even for a model this machine lacks).
    refused = client.post(f"{API_PREFIX}/jobs", json={**short, "seed": 10}, headers=key)
    assert error_of(refused)[:2] == (429, "busy") and int(refused.headers["retry-after"]) >= 1
    assert error_of(client.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "a fox"}, headers=key))[:2] == (429, "busy")

    # The page's job stopped from the page, the API's then runs.
    click(at, "Cancel")
    assert wait_job_status(queue, page_job).state is JobState.CANCELLED
    assert wait_job_status(queue, waiting.json()["id"]).state is JobState.DONE
    assert client.get(f"{API_PREFIX}/jobs/{waiting.json()['id']}/result", headers=key).status_code == 200
    # A model this machine lacks: 503 with how to get it.
    status, code, message = error_of(client.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "a fox"}, headers=key))
    assert (status, code) == (503, "model_unavailable") and "python -m core download sd-turbo" in message


def wait_job_status(queue, job_id: str):
    status = queue.wait(job_id, timeout=60)
    assert status.state.finished, status
    return status


@pytest.mark.slow
def test_item_32_the_app_server_serves_the_api_with_its_key_and_body_cap(app_server):
    """32. API: auth, body cap, same queue and lock, 429/503 when full."""
    url, process = app_server.url, app_server.process
    with httpx.Client(base_url=url, timeout=60) as http:
        health = http.get(f"{API_PREFIX}/health")
        assert health.status_code == 200 and health.json()["pid"] == process.pid  # the pages' own process
        assert error_of(http.get(f"{API_PREFIX}/models"))[:2] == (401, "unauthorized")
        key = {"Authorization": f"Bearer {SERVER_API_KEY}"}
        assert http.get(f"{API_PREFIX}/models", headers=key).status_code == 200
        too_big = http.post(f"{API_PREFIX}/generate", content=b"x" * (2 * 2**20), headers={**key, "content-type": "application/json"})
        assert error_of(too_big)[:2] == (413, "body_too_large")
        status, code, _ = error_of(http.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "a fox"}, headers=key))
        assert (status, code) == (503, "model_unavailable")
