"""core/batch.py: safe ZIP reading, matching masks to images, running a batch through the real
queue (OpenCV), and the results ZIP."""

from __future__ import annotations

import io
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.batch import (
    BatchLimits,
    BatchRun,
    NamedFile,
    is_mask_name,
    mask_key,
    match_items,
    read_zip,
    results_zip,
    split_images_and_masks,
    unique_names,
)
from core.errors import BadParameterError
from core.images import load_image
from core.jobs import JobQueue, JobState, Worker
from core.requests import InpaintRequest
from core.runner import Studio
from core.settings import ImageLimits


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(entries: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def small_png() -> bytes:
    return png(Image.new("RGB", (32, 24), (200, 30, 30)))


# -- reading ZIPs safely --------------------------------------------------------------------------


def test_read_zip_returns_images_with_their_relative_names(small_png):
    files, notes = read_zip(make_zip({"images/a.png": small_png, "masks/a.png": small_png, "b.jpg": small_png}))
    assert [file.name for file in files] == ["images/a.png", "masks/a.png", "b.jpg"]
    assert all(file.data == small_png for file in files)
    assert notes == []


@pytest.mark.parametrize(
    "name", ["../evil.png", "/etc/evil.png", "C:/evil.png", "a/../../evil.png", "..\\evil.png", "a\\..\\..\\evil.png"]
)
def test_entries_that_could_escape_the_folder_are_skipped(small_png, name):
    files, notes = read_zip(make_zip({name: small_png, "fine.png": small_png}))
    assert [file.name for file in files] == ["fine.png"]
    assert len(notes) == 1 and "outside the archive" in notes[0]


def test_windows_separators_inside_the_archive_are_normalised(small_png):
    files, _ = read_zip(make_zip({"images\\cup.png": small_png}))
    assert [file.name for file in files] == ["images/cup.png"]


def test_links_encrypted_and_non_image_entries_are_skipped_and_hidden_files_ignored(small_png):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("notes.txt", b"hello")
        archive.writestr("__MACOSX/._a.png", small_png)
        archive.writestr(".DS_Store", b"x")
        archive.writestr("a.png", small_png)
    files, notes = read_zip(buffer.getvalue())
    assert [file.name for file in files] == ["a.png"]
    assert any("link.png" in note and "link" in note for note in notes)
    assert any("notes.txt" in note for note in notes)
    assert not any("DS_Store" in note or "MACOSX" in note for note in notes)


def test_a_zip_bomb_is_refused_before_it_is_unpacked():
    bomb = make_zip({"bomb.png": b"\0" * (8 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(BadParameterError, match="zip bomb"):
        read_zip(bomb)


def test_too_many_files_and_too_many_bytes_are_refused(small_png):
    with pytest.raises(BadParameterError, match="holds 4 files; the limit is 3"):
        read_zip(make_zip({f"{index}.png": small_png for index in range(4)}), BatchLimits(max_files=3))
    big = make_zip(
        {"a.png": bytes(range(256)) * 4096, "b.png": bytes(range(256)) * 4096}, compression=zipfile.ZIP_STORED
    )
    with pytest.raises(BadParameterError, match="unpacks to"):
        read_zip(big, BatchLimits(max_total_bytes=1024 * 1024))


def test_a_file_over_the_per_file_cap_is_skipped_and_the_rest_kept(small_png):
    data = make_zip({"huge.png": bytes(range(256)) * 8192, "ok.png": small_png}, compression=zipfile.ZIP_STORED)
    files, notes = read_zip(data, BatchLimits(max_file_bytes=1024 * 1024))
    assert [file.name for file in files] == ["ok.png"]
    assert any("huge.png" in note and "limit" in note for note in notes)


def test_something_that_is_not_a_zip_is_refused_with_a_message():
    with pytest.raises(BadParameterError, match="not a ZIP"):
        read_zip(b"PK\x03\x04 but nothing else")


# -- matching masks to images -----------------------------------------------------------------------


def test_mask_names_folders_and_suffixes():
    assert is_mask_name("masks/cup.png") and is_mask_name("Mask/cup.png") and is_mask_name("cup_mask.png")
    assert is_mask_name("cup-mask.webp") and not is_mask_name("cup.png") and not is_mask_name("masked/cup.png")
    assert [mask_key(name) for name in ("masks/cup.png", "cup_mask.png", "cup-MASK.jpg", "cup.mask.png")] == ["cup"] * 4


def test_match_by_stem_reports_missing_and_ambiguous_masks():
    files = [
        NamedFile(name, b"")
        for name in ("images/a.png", "images/b.png", "c.png", "masks/a.png", "b_mask.png", "masks/c.png", "c-mask.png")
    ]
    images, found_masks = split_images_and_masks(files)
    assert [image.name for image in images] == ["images/a.png", "images/b.png", "c.png"]
    items = match_items(images, found_masks)
    assert [(item.name, item.mask.name if item.mask else None) for item in items] == [
        ("a", "masks/a.png"),
        ("b", "b_mask.png"),
        ("c", None),
    ]
    assert items[0].problem is None and items[1].problem is None
    assert "several masks match c" in items[2].problem
    lonely = match_items([NamedFile("d.png", b"")], found_masks)
    assert "no mask named like d" in lonely[0].problem


def test_duplicate_image_names_get_unique_output_names_and_share_their_mask():
    images = [NamedFile("x/photo.png", b"1"), NamedFile("y/photo.jpg", b"2"), NamedFile("photo (2).png", b"3")]
    items = match_items(images, [NamedFile("masks/photo.png", b"m")])
    assert [item.name for item in items] == ["photo", "photo (3)", "photo (2)"]
    assert [item.mask.name if item.mask else None for item in items] == ["masks/photo.png", "masks/photo.png", None]
    assert len(set(unique_names(["a", "a", "a (2)", "a"]))) == 4


def test_one_mask_for_all_images():
    shared = NamedFile("mask.png", b"m")
    items = match_items([NamedFile("a.png", b""), NamedFile("b.png", b"")], shared_mask=shared)
    assert [item.mask for item in items] == [shared, shared]


# -- running a batch through the real queue ----------------------------------------------------------


@pytest.fixture
def queue():
    made = JobQueue(Studio.from_settings(), max_per_session=2)
    yield made
    made.shutdown(wait=True)


def drive(run: BatchRun, queue: JobQueue, *, in_flight: int, timeout: float = 60) -> int:
    """Poll as the page does; returns the largest number of this batch's jobs unfinished at once."""
    most = 0
    deadline = time.monotonic() + timeout
    while not run.finished(queue):
        assert time.monotonic() < deadline, "the batch did not finish"
        run.submit_more(queue, "tab", in_flight=in_flight)
        unfinished = sum(not status.state.finished for status in queue.jobs(session="tab", group=run.group))
        most = max(most, unfinished)
        time.sleep(0.01)
    return most


def test_a_batch_runs_every_good_item_and_one_bad_file_never_stops_the_rest(queue, coffee):
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (250, 150, 330, 230))
    shifted = [coffee.rotate(angle) for angle in (0, 90, 180, 270)]
    images = [NamedFile(f"cup{index}.png", png(image)) for index, image in enumerate(shifted)]
    images.insert(2, NamedFile("broken.png", b"\x89PNG\r\n\x1a\nnot really"))
    items = match_items(images, shared_mask=NamedFile("mask.png", png(mask)))
    run = BatchRun(items, InpaintRequest(model="opencv-telea"))
    most = drive(run, queue, in_flight=2)
    assert most <= 2  # never more in flight than asked (the queue's per-session limit)
    results = dict(run.results())
    assert sorted(results) == ["cup0", "cup1", "cup2", "cup3"]
    problems = dict(run.problems())
    assert list(problems) == ["broken"] and "corrupt" in problems["broken"]
    outside = np.asarray(mask) == 0
    for index, source in enumerate(shifted):
        after = np.asarray(load_image(results[f"cup{index}"]))
        assert np.array_equal(after[outside], np.asarray(source)[outside])
    assert all(view.status.state is JobState.DONE for view in run.views(queue) if view.status is not None)


def test_a_job_that_finishes_between_two_looks_still_delivers_its_result(queue, coffee, monkeypatch):
    # Each look at a job's status lets it finish right after: a batch that reads a status twice in
    # one look sees "done" the second time without having read the result.
    read_status = queue.status

    def status_then_finish(job_id):
        status = read_status(job_id)
        if not status.state.finished:
            queue.wait(job_id, timeout=30)
        return status

    monkeypatch.setattr(queue, "status", status_then_finish)
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (250, 150, 330, 230))
    items = match_items([NamedFile("cup.png", png(coffee))], shared_mask=NamedFile("mask.png", png(mask)))
    run = BatchRun(items, InpaintRequest(model="opencv-telea"))  # one item: the last one decides the end
    drive(run, queue, in_flight=1)
    assert [name for name, _ in run.results()] == ["cup"] and run.problems() == []


def test_a_mask_of_another_aspect_fails_only_its_item(queue, coffee):
    good_mask = Image.new("L", coffee.size, 0)
    good_mask.paste(255, (10, 10, 50, 50))
    items = match_items(
        [NamedFile("a.png", png(coffee)), NamedFile("b.png", png(coffee))],
        [NamedFile("masks/a.png", png(good_mask)), NamedFile("masks/b.png", png(Image.new("L", (100, 100), 255)))],
    )
    run = BatchRun(items, InpaintRequest(model="opencv-ns"))
    drive(run, queue, in_flight=2)
    assert [name for name, _ in run.results()] == ["a"]
    assert "aspect ratio" in dict(run.problems())["b"]


def test_batch_masks_are_held_to_the_operators_image_limits(queue, coffee):
    small = coffee.resize((60, 40))
    huge_mask = Image.new("L", (600, 400), 0)  # the image's aspect, ten times its side: 240 000 pixels
    huge_mask.paste(255, (100, 100, 200, 200))
    items = match_items([NamedFile("a.png", png(small))], shared_mask=NamedFile("m.png", png(huge_mask)))
    run = BatchRun(items, InpaintRequest(model="opencv-telea"), limits=ImageLimits(max_pixels=100_000))
    drive(run, queue, in_flight=1)
    assert run.results() == []
    assert dict(run.problems())["a"] == "unusable mask: image is 600x400 (0.2 MP); the limit is 0.1 MP"


def test_cancelling_a_batch_stops_what_has_not_started_and_keeps_what_finished(queue, coffee):
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (250, 150, 330, 230))
    images = [NamedFile(f"{index}.png", png(coffee.rotate(index * 3))) for index in range(6)]
    run = BatchRun(match_items(images, shared_mask=NamedFile("m.png", png(mask))), InpaintRequest(model="opencv-telea"))
    queue = JobQueue(queue.studio, workers=0)  # jobs run only when this test says so
    worker = Worker(queue, "test-worker")
    try:
        run.submit_more(queue, "tab", in_flight=1)
        assert worker.run_one()  # the first item runs; the feeder may queue the next, which never starts
        queue.wait(run.items[0].job_id, timeout=30)
        run.views(queue)  # the page polls: the finished result is kept
        run.cancel(queue, "tab")
    finally:
        queue.shutdown()
    assert run.finished(queue)
    assert [name for name, _ in run.results()] == ["0"]
    assert dict(run.problems())["5"] == "cancelled before it started"
    assert run.submit_more(queue, "tab", in_flight=4) == 0


def test_a_batch_runs_to_the_end_with_its_page_closed(queue, coffee):
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (250, 150, 330, 230))
    images = [NamedFile(f"{index}.png", png(coffee.rotate(index * 5))) for index in range(5)]
    run = BatchRun(match_items(images, shared_mask=NamedFile("m.png", png(mask))), InpaintRequest(model="opencv-telea"))
    run.submit_more(queue, "tab", in_flight=1)  # the page's first poll; then the tab is closed: nobody polls again
    deadline = time.monotonic() + 60
    while sum(status.state is JobState.DONE for status in queue.jobs(group=run.group)) < len(images):
        assert time.monotonic() < deadline, "the batch stopped when its page stopped polling"
        time.sleep(0.05)


def test_results_zip_holds_each_result_and_a_list_of_problems():
    data = results_zip([("a", b"png-a"), ("a (2)", b"png-b")], [("broken", "image file is truncated or corrupt")])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["a.png", "a (2).png", "errors.txt"]
        assert archive.read("a (2).png") == b"png-b"
        assert archive.read("errors.txt").decode() == "broken: image file is truncated or corrupt\n"
    with zipfile.ZipFile(io.BytesIO(results_zip([("a", b"x")]))) as archive:
        assert archive.namelist() == ["a.png"]


def test_the_batch_module_runs_without_streamlit():
    import subprocess
    import sys

    check = "import sys, core.batch; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], cwd=Path(__file__).resolve().parents[1]).returncode == 0
