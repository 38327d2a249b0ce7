"""The store's listing, derived files and delete, and the history built on them."""

from __future__ import annotations

import io
import os

from PIL import Image

from core.history import HistoryEntry, filtered, generate_fields, history, thumbnail
from core.keys import digest_bytes
from core.provenance import encode_png
from core.store import ResultStore


def key(n: int) -> str:
    return digest_bytes(str(n).encode())


def put(store: ResultStore, n: int, **parameters) -> str:
    png = encode_png(Image.new("RGB", (300, 200), (n * 40 % 256, 0, 0)), parameters)
    store.put(key(n), [png], {"parameters": parameters})
    return key(n)


def test_listing_is_newest_first_reads_no_png_and_skips_damaged_entries(tmp_path):
    store = ResultStore(tmp_path, 10**9)
    keys = [put(store, n, task="txt2img", model="m", prompt=f"p{n}", width=300, height=200) for n in range(3)]
    for age, entry_key in enumerate(reversed(keys)):  # keys[2] newest
        png = store.root / entry_key[:2] / entry_key / "0.png"
        os.utime(png, (1_000_000 - age * 10, 1_000_000 - age * 10))
    (store.root / keys[0][:2] / keys[0] / "meta.json").write_text("{}")
    assert [listed.key for listed in store.listing()] == [keys[2], keys[1]]
    entries = history(store)
    assert entries[0].prompt == "p2" and entries[0].size == (300, 200) and entries[0].images == 1


def test_a_thumbnail_is_made_once_and_leaves_with_its_entry(tmp_path):
    store = ResultStore(tmp_path, 10**9)
    entry_key = put(store, 1, task="txt2img", model="m", prompt="p")
    made = []

    def make(stored):
        made.append(1)
        return b"thumb"

    assert store.derived(entry_key, "thumb-test.webp", make) == b"thumb"
    assert store.derived(entry_key, "thumb-test.webp", make) == b"thumb"
    assert made == [1]
    small = Image.open(io.BytesIO(thumbnail(store, entry_key)))
    assert small.format == "WEBP" and small.size == (256, 171)
    assert store.get(entry_key) is not None  # extra files never damage the entry
    assert store.delete(entry_key) and not store.delete(entry_key)
    assert store.listing() == [] and store.total_bytes() == 0
    assert store.derived(entry_key, "thumb-test.webp", make) is None


def test_filters_and_restorable_fields():
    def entry(**parameters):
        return HistoryEntry("k" * 64, 0.0, parameters, 1, None)

    entries = [
        entry(task="txt2img", model="sd-turbo", prompt="A red Fox", seed=42, width=512, height=512, num_images=1),
        entry(task="inpaint", model="lama", prompt="", seed=0),
    ]
    assert filtered(entries, text="fox") == entries[:1]
    assert filtered(entries, text="42") == entries[:1]
    assert filtered(entries, tasks=["inpaint"]) == entries[1:]
    assert filtered(entries, models=["sd-turbo", "lama"]) == entries
    assert generate_fields(entries[0].parameters | {"engine": "x", "filtered": [False]}) == {
        "model": "sd-turbo",
        "prompt": "A red Fox",
        "seed": 42,
        "width": 512,
        "height": 512,
        "num_images": 1,
    }
