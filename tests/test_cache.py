"""The result cache: complete keys, exact image digests, and a store that never serves a torn,
damaged or foreign entry, stays within its size and is shared safely between processes."""

from __future__ import annotations

import ast
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import blake3
import numpy as np
import pytest
from PIL import Image

from core.keys import KEY_LENGTH, digest_bytes, image_digest, request_key
from core.requests import GenerateRequest, InpaintRequest, fields
from core.store import PNG_SIGNATURE, ResultStore, StoredResult

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def make_key(label: str) -> str:
    return blake3.blake3(label.encode()).hexdigest()


def fake_png(fill: int, size: int = 10_000) -> bytes:
    """PNG-signed bytes of a known size: the store checks the signature, not the image."""
    return PNG_SIGNATURE + bytes([fill]) * size


def real_png(colour: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    return buffer.getvalue()


def entry_dir(root: Path, key: str) -> Path:
    return root / key[:2] / key


def leftovers(root: Path) -> list[str]:
    return sorted(os.listdir(root / ".tmp"))


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)


# -- request keys --------------------------------------------------------------------------------

GENERATE = GenerateRequest(
    model="sd-turbo", prompt="a lighthouse at dusk", negative_prompt="blurry", num_inference_steps=20,
    guidance_scale=7.5, seed=1234, scheduler="Euler a", decoder="fast", width=512, height=512, num_images=2,
)  # fmt: skip
INPAINT = InpaintRequest(
    model="sd-inpaint", prompt="a red door", negative_prompt="text", num_inference_steps=25, guidance_scale=6.0,
    seed=99, scheduler="DDIM", decoder="full", strength=0.8, mask_blur=4, mask_grow=2, invert_mask=False, padding=32,
    whole_image=False,
)  # fmt: skip
DIGESTS = {"image": make_key("image"), "mask": make_key("mask")}


def changed(value):
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "x"
    raise AssertionError(f"no rule to change {value!r}")


def key_of(parameters, *, model_source="org/model@abc123", engine_version="diffusers-1", image_digests=DIGESTS):
    return request_key(parameters, model_source=model_source, engine_version=engine_version, image_digests=image_digests)


FIELDS = [(request, name) for request in (GENERATE, INPAINT) for name in request.parameters()]


@pytest.mark.parametrize(("request_", "name"), FIELDS, ids=[f"{r.task}-{n}" for r, n in FIELDS])
def test_changing_any_one_parameter_changes_the_key(request_, name):
    parameters = request_.parameters()
    assert parameters[name] is not None, "every field is set, so every field is exercised"
    altered = {**parameters, name: changed(parameters[name])}
    assert key_of(altered) != key_of(parameters)


def test_every_request_field_is_covered_by_the_parametrisation():
    # A new request field in the schema must show up in FIELDS (and so be proven part of the key); the
    # pixels enter the key as digests (test_model_engine_and_images_are_part_of_the_key).
    for request in (GENERATE, INPAINT):
        names = {name for r, name in FIELDS if r is request}
        schema = set(fields(type(request))) - {"image", "mask"}
        assert names == schema | {"task"}
        assert {"model", "seed", "prompt", "num_inference_steps"} <= names


@pytest.mark.parametrize(
    "variation",
    [
        {"model_source": "org/model@def456"},  # another revision
        {"model_source": "org/other@abc123"},
        {"engine_version": "diffusers-2"},
        {"image_digests": {**DIGESTS, "image": make_key("other image")}},
        {"image_digests": {**DIGESTS, "mask": make_key("other mask")}},
        {"image_digests": {"image": DIGESTS["image"]}},
        {"image_digests": {}},
    ],
    ids=["revision", "source", "engine", "image", "mask", "no-mask", "no-images"],
)
def test_model_engine_and_images_are_part_of_the_key(variation):
    assert key_of(INPAINT.parameters(), **variation) != key_of(INPAINT.parameters())


def test_same_request_same_key_whatever_the_order():
    rebuilt = GenerateRequest(**{name: getattr(GENERATE, name) for name in fields(GenerateRequest)})
    reordered = dict(reversed(list(GENERATE.parameters().items())))
    key = key_of(GENERATE.parameters())
    assert key == key_of(rebuilt.parameters()) == key_of(reordered)
    assert len(key) == KEY_LENGTH and int(key, 16) >= 0 and key == key.lower()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(bad):
    with pytest.raises(ValueError):
        key_of({**GENERATE.parameters(), "guidance_scale": bad})


# -- image digests ------------------------------------------------------------------------------


def noise_image(mode: str = "RGB", size=(257, 131), seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def test_image_digest_is_exactly_the_pixels():
    image = noise_image()
    assert image_digest(image) == image_digest(image.copy())
    # Streaming the pixels must hash exactly the bytes tobytes() gives (no row or chunk lost).
    assert image_digest(image) == image_digest(Image.frombytes("RGB", image.size, image.tobytes()))


@pytest.mark.parametrize("where", [(0, 0), (128, 65), (256, 130)], ids=["first", "middle", "last"])
def test_one_changed_pixel_changes_the_digest(where):
    image = noise_image()
    touched = image.copy()
    red, green, blue = touched.getpixel(where)
    touched.putpixel(where, (red ^ 1, green, blue))
    assert image_digest(touched) != image_digest(image)


def test_one_changed_pixel_in_a_large_image_changes_the_digest():
    image = Image.new("RGB", (4096, 4096), (10, 20, 30))
    touched = image.copy()
    touched.putpixel((2048, 3001), (10, 20, 31))
    assert image_digest(touched) != image_digest(image)


def test_mode_size_and_palette_are_part_of_the_digest():
    rgb = noise_image()
    rgba = rgb.convert("RGBA")  # same colours, opaque
    assert image_digest(rgb) != image_digest(rgba)
    grey = Image.frombytes("L", (8, 4), bytes(range(32)))
    assert image_digest(grey) != image_digest(Image.frombytes("L", (4, 8), bytes(range(32))))
    assert image_digest(grey) != image_digest(Image.frombytes("P", (8, 4), bytes(range(32))))
    palette_a = Image.frombytes("P", (8, 4), bytes(range(32)))
    palette_a.putpalette(list(range(96)))
    palette_b = palette_a.copy()
    palette_b.putpalette(list(range(1, 97)))
    assert palette_a.tobytes() == palette_b.tobytes()
    assert image_digest(palette_a) != image_digest(palette_b)


def test_digest_bytes_is_blake3():
    assert digest_bytes(b"canvas") == blake3.blake3(b"canvas").hexdigest()
    assert digest_bytes(b"canvas") != digest_bytes(b"canvaS")


# -- the store: round trip and keys -------------------------------------------------------------


def test_round_trip(tmp_path):
    store = ResultStore(tmp_path, 10 * MB)
    key = make_key("round trip")
    pngs = [real_png((1, 2, 3)), real_png((4, 5, 6))]
    metadata = {"parameters": {"seed": 7, "prompt": "été"}, "filtered": [False, False], "elapsed_s": 1.25}
    assert store.get(key) is None and key not in store
    store.put(key, pngs, metadata)
    assert key in store
    hit = store.get(key)
    assert hit == StoredResult(tuple(pngs), metadata)
    assert [Image.open(io.BytesIO(png)).getpixel((0, 0)) for png in hit.pngs] == [(1, 2, 3), (4, 5, 6)]
    # JSON and PNG files only: nothing a reader would have to unpickle.
    entry = entry_dir(tmp_path, key)
    assert sorted(os.listdir(entry)) == ["0.png", "1.png", "meta.json"]
    assert json.loads((entry / "meta.json").read_text())["metadata"] == metadata
    assert (entry / "1.png").read_bytes() == pngs[1]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "bad_key",
    ["", "a" * 63, "a" * 65, "A" * 64, "g" * 64, "../" + "a" * 61, "a" * 62 + "/b", "..", None, 12],
    ids=["empty", "short", "long", "upper", "not-hex", "traversal", "slash", "dots", "none", "int"],
)
def test_keys_are_validated(tmp_path, bad_key):
    store = ResultStore(tmp_path, MB)
    with pytest.raises(ValueError):
        store.get(bad_key)
    with pytest.raises(ValueError):
        store.put(bad_key, [fake_png(1)], {})
    with pytest.raises(ValueError):
        bad_key in store  # noqa: B015 - the lookup itself must refuse
    assert sorted(os.listdir(tmp_path)) == [".tmp"]


def test_bad_values_are_refused_before_writing(tmp_path):
    store = ResultStore(tmp_path, MB)
    key = make_key("bad values")
    with pytest.raises(ValueError):
        store.put(key, [b"GIF89a not a png"], {})
    with pytest.raises(ValueError):
        store.put(key, [], {})
    with pytest.raises(ValueError):
        store.put(key, [fake_png(1)], {"guidance_scale": math.nan})
    with pytest.raises(ValueError):
        store.put(key, [fake_png(1)], {"image": object()})
    assert store.get(key) is None and store.total_bytes() == 0


def test_a_result_larger_than_the_store_is_not_kept(tmp_path):
    store = ResultStore(tmp_path, 5_000)
    store.put(make_key("huge"), [fake_png(1, 10_000)], {})
    assert store.get(make_key("huge")) is None
    assert store.total_bytes() == 0


def test_putting_the_same_key_again_keeps_one_entry(tmp_path):
    store = ResultStore(tmp_path, MB)
    key = make_key("twice")
    store.put(key, [fake_png(3)], {"n": 1})
    size = store.total_bytes()
    store.put(key, [fake_png(3)], {"n": 1})
    assert store.total_bytes() == size
    assert store.get(key).metadata == {"n": 1}
    assert leftovers(tmp_path) == []


def test_clear(tmp_path):
    store = ResultStore(tmp_path, MB)
    for label in "abc":
        store.put(make_key(label), [fake_png(1)], {})
    store.clear()
    assert store.total_bytes() == 0
    assert all(store.get(make_key(label)) is None for label in "abc")


# -- damaged entries are misses, and removed ----------------------------------------------------


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def damage_png_byte(entry: Path) -> None:
    flip_byte(entry / "1.png", 40)


def truncate_meta(entry: Path) -> None:
    meta = entry / "meta.json"
    meta.write_bytes(meta.read_bytes()[:-7])


def delete_png(entry: Path) -> None:
    (entry / "0.png").unlink()


def truncate_png(entry: Path) -> None:
    png = entry / "0.png"
    png.write_bytes(png.read_bytes()[:-1])


def rewrite_metadata(entry: Path) -> None:
    # Valid JSON, plausible content, but not what was stored: the record's own digest catches it.
    meta = entry / "meta.json"
    record = json.loads(meta.read_text())
    record["metadata"]["parameters"]["seed"] = 8
    meta.write_text(json.dumps(record))


def swap_in_other_png(entry: Path) -> None:
    # A PNG whose digest is recomputed in meta.json without the record's check being redone.
    meta = entry / "meta.json"
    record = json.loads(meta.read_text())
    other = real_png((0, 0, 0))
    (entry / "0.png").write_bytes(other)
    record["files"][0].update(size=len(other), blake3=digest_bytes(other))
    meta.write_text(json.dumps(record))


def empty_meta(entry: Path) -> None:
    (entry / "meta.json").write_bytes(b"")


@pytest.mark.parametrize(
    "damage", [damage_png_byte, truncate_meta, delete_png, truncate_png, rewrite_metadata, swap_in_other_png, empty_meta]
)
def test_a_damaged_entry_is_a_miss_and_is_removed(tmp_path, damage):
    store = ResultStore(tmp_path, MB)
    key = make_key("damaged")
    pngs = [real_png((1, 1, 1)), real_png((2, 2, 2))]
    store.put(key, pngs, {"parameters": {"seed": 7}})
    damage(entry_dir(tmp_path, key))
    assert store.get(key) is None
    assert not entry_dir(tmp_path, key).exists()
    assert leftovers(tmp_path) == []  # removed, not left in the trash
    # Recomputed and stored again, it is a hit.
    store.put(key, pngs, {"parameters": {"seed": 7}})
    assert store.get(key) == StoredResult(tuple(pngs), {"parameters": {"seed": 7}})


def test_an_entry_moved_under_another_key_is_a_miss(tmp_path):
    store = ResultStore(tmp_path, MB)
    original, other = make_key("original"), make_key("other")
    store.put(original, [fake_png(1)], {"who": "original"})
    entry_dir(tmp_path, other).parent.mkdir(exist_ok=True)
    shutil.copytree(entry_dir(tmp_path, original), entry_dir(tmp_path, other))
    assert store.get(other) is None
    assert store.get(original).metadata == {"who": "original"}


def test_a_damaged_entry_is_replaced_by_the_next_put(tmp_path):
    store = ResultStore(tmp_path, MB)
    key = make_key("replace")
    store.put(key, [fake_png(5)], {"v": 1})
    truncate_meta(entry_dir(tmp_path, key))
    store.put(key, [fake_png(5)], {"v": 1})  # without a get() first
    assert store.get(key) == StoredResult((fake_png(5),), {"v": 1})


FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}


def test_no_module_in_core_can_unpickle():
    offenders = []
    sources = sorted((REPO / "core").rglob("*.py"))
    assert len(sources) > 5
    for source in sources:
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                names = [str(node.args[0].value)] if function in ("__import__", "import_module") else []
            else:
                continue
            offenders += [f"{source.relative_to(REPO)}: {name}" for name in names if name.split(".")[0] in FORBIDDEN_MODULES]
    assert offenders == []


# -- size bound and LRU -------------------------------------------------------------------------


def entry_size(tmp_path: Path) -> int:
    probe = ResultStore(tmp_path / "probe", MB)
    probe.put(make_key("probe"), [fake_png(0)], {"i": "000"})
    return probe.total_bytes()


def test_least_recently_used_is_evicted_and_a_read_entry_survives(tmp_path):
    size = entry_size(tmp_path)
    store = ResultStore(tmp_path / "store", 3 * size + size // 2)  # room for three
    first, second, third, fourth = (make_key(label) for label in ("first", "second", "third", "fourth"))
    for index, key in enumerate((first, second, third)):
        store.put(key, [fake_png(index)], {"i": f"{index:03d}"})
    assert store.get(first) is not None  # first is now the most recently used
    store.put(fourth, [fake_png(3)], {"i": "003"})
    assert second not in store
    assert all(key in store for key in (first, third, fourth))
    assert store.total_bytes() == 3 * size <= store.max_bytes


def test_the_size_bound_holds_after_every_put(tmp_path):
    size = entry_size(tmp_path)
    store = ResultStore(tmp_path / "store", 10 * size)
    hot = make_key("hot")
    store.put(hot, [fake_png(255)], {"i": "255"})
    recent = []
    for index in range(40):
        key = make_key(f"entry {index}")
        store.put(key, [fake_png(index)], {"i": f"{index:03d}"})
        recent.append(key)
        assert store.get(hot) is not None
        assert store.total_bytes() <= store.max_bytes
    # What survives is exactly the hot entry and the newest others.
    survivors = {key for key in [hot, *recent] if key in store}
    assert survivors == {hot, *recent[-9:]}


def test_two_stores_on_one_directory_share_the_bound(tmp_path):
    # Two ResultStore objects on one root behave like two processes: one shared running total.
    size = entry_size(tmp_path)
    one, two = ResultStore(tmp_path / "store", 4 * size), ResultStore(tmp_path / "store", 4 * size)
    for index in range(12):
        (one if index % 2 else two).put(make_key(f"shared {index}"), [fake_png(index)], {"i": f"{index:03d}"})
        assert one.total_bytes() <= 4 * size
    assert one.total_bytes() == 4 * size


def test_entries_deleted_behind_the_stores_back_are_tolerated(tmp_path):
    size = entry_size(tmp_path)
    store = ResultStore(tmp_path / "store", 3 * size)
    keys = [make_key(f"gone {index}") for index in range(3)]
    for index, key in enumerate(keys):
        store.put(key, [fake_png(index)], {"i": f"{index:03d}"})
    shutil.rmtree(entry_dir(tmp_path / "store", keys[0]))
    (tmp_path / "store" / ".usage").write_text("not json")
    store.put(make_key("after"), [fake_png(9)], {"i": "009"})
    assert make_key("after") in store and keys[1] in store and keys[2] in store
    assert store.total_bytes() == 3 * size


# -- threads and processes ----------------------------------------------------------------------


def test_concurrent_puts_of_one_key_from_threads(tmp_path):
    store = ResultStore(tmp_path, 10 * MB)
    key = make_key("threads")
    pngs = [fake_png(7, 200_000), fake_png(8, 200_000)]
    start = threading.Barrier(8)
    errors = []

    def put():
        try:
            start.wait()
            store.put(key, pngs, {"who": "any"})
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    workers = [threading.Thread(target=put) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert store.get(key) == StoredResult(tuple(pngs), {"who": "any"})
    assert os.listdir(tmp_path / key[:2]) == [key]
    assert leftovers(tmp_path) == []
    assert store.total_bytes() == sum(len(png) for png in pngs) + (entry_dir(tmp_path, key) / "meta.json").stat().st_size


PUT_CODE = """
import sys
from pathlib import Path
from core.store import PNG_SIGNATURE, ResultStore
store = ResultStore(Path(sys.argv[1]), 10 * 1024 * 1024)
store.put(sys.argv[2], [PNG_SIGNATURE + bytes([int(sys.argv[3])]) * 50_000], {"writer": sys.argv[3]})
"""

GET_CODE = """
import json, sys
from pathlib import Path
from core.keys import digest_bytes
from core.store import ResultStore
hit = ResultStore(Path(sys.argv[1]), 10 * 1024 * 1024).get(sys.argv[2])
print(json.dumps(None if hit is None else {"pngs": [digest_bytes(p) for p in hit.pngs], "metadata": hit.metadata}))
"""


def test_a_result_stored_by_another_process_is_a_hit(tmp_path):
    key = make_key("across processes")
    run_python(PUT_CODE, str(tmp_path), key, "4")
    hit = ResultStore(tmp_path, 10 * MB).get(key)
    assert hit == StoredResult((PNG_SIGNATURE + bytes([4]) * 50_000,), {"writer": "4"})


def test_a_result_stored_here_is_a_hit_in_another_process(tmp_path):
    key = make_key("to another process")
    png = real_png((9, 8, 7))
    ResultStore(tmp_path, 10 * MB).put(key, [png], {"parameters": {"seed": 3}})
    answer = json.loads(run_python(GET_CODE, str(tmp_path), key).stdout)
    assert answer == {"pngs": [digest_bytes(png)], "metadata": {"parameters": {"seed": 3}}}
    assert json.loads(run_python(GET_CODE, str(tmp_path), make_key("absent")).stdout) is None


SLOW_DISK = """
import os, time
_fsync = os.fsync
def slow_fsync(descriptor):  # a slow disk: every flush takes a while, so writes overlap
    time.sleep({delay})
    _fsync(descriptor)
os.fsync = slow_fsync
"""


def test_concurrent_puts_of_one_key_from_processes(tmp_path):
    key = make_key("processes")
    code = SLOW_DISK.format(delay=0.05) + PUT_CODE
    writers = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), key, "6"], cwd=REPO, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=60)
        assert writer.returncode == 0, stderr.decode()
    store = ResultStore(tmp_path, 10 * MB)
    assert store.get(key) == StoredResult((PNG_SIGNATURE + bytes([6]) * 50_000,), {"writer": "6"})
    assert os.listdir(tmp_path / key[:2]) == [key]
    assert leftovers(tmp_path) == []


KILLED_WRITER = (
    SLOW_DISK.format(delay=0.5)
    + """
import sys
from pathlib import Path
from core.store import PNG_SIGNATURE, ResultStore
store = ResultStore(Path(sys.argv[1]), 1024 * 1024 * 1024)
store.put(sys.argv[2], [PNG_SIGNATURE + bytes([n]) * 300_000 for n in range(20)], {"writer": "killed"})
print("finished")
"""
)


def test_a_writer_killed_mid_put_leaves_no_torn_entry_and_its_orphan_is_swept(tmp_path):
    key = make_key("killed")
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path), key], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # 1. Wait until the writer is mid-put: its temp dir holds at least one written file.
        deadline = time.monotonic() + 30
        temp_dir = tmp_path / ".tmp"
        while not (temp_dir.is_dir() and any(any(d.iterdir()) for d in temp_dir.iterdir() if d.is_dir())):
            assert writer.poll() is None, writer.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
        store = ResultStore(tmp_path, MB)
        assert store.get(key) is None  # while it writes, nothing is visible
        # 2. Kill it.
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL
    # 3. No torn entry, ever: the key is absent, the partial write sits unpublished.
    assert store.get(key) is None and key not in store
    assert not entry_dir(tmp_path, key).exists()
    assert store.total_bytes() == 0
    orphans = leftovers(tmp_path)
    assert len(orphans) == 1 and orphans[0].startswith(key)
    # 4. A fresh orphan may be a live writer: the default age spares it; an explicit sweep removes it.
    assert ResultStore(tmp_path, MB).sweep_orphans() == 0
    assert store.sweep_orphans(older_than_s=0) == 1
    assert leftovers(tmp_path) == []
    # 5. The store works on: the result is stored again and served whole.
    store.put(key, [fake_png(1)], {"writer": "parent"})
    assert store.get(key).metadata == {"writer": "parent"}


def test_old_orphans_are_swept_when_a_store_opens(tmp_path):
    ResultStore(tmp_path, MB)
    old, fresh = tmp_path / ".tmp" / f"{make_key('old')}.1.ab", tmp_path / ".tmp" / f"{make_key('fresh')}.2.cd"
    for orphan in (old, fresh):
        orphan.mkdir()
        (orphan / "0.png").write_bytes(fake_png(1))
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    ResultStore(tmp_path, MB)
    assert leftovers(tmp_path) == [fresh.name]
