"""Batch inpainting: many images with their masks, through the shared queue, one bad file never
stopping the rest.

1. Inputs: image files plus one mask for all, or masks matched to images by file stem, or a ZIP
   holding both (read entry by entry with `zipfile`, never `extractall`: no path traversal, no
   links, caps on count, sizes and compression ratio, so a zip bomb is refused).
2. `BatchRun` submits the items to the queue a few at a time (the queue limits jobs per session)
   as one group, decoding each image only when it is submitted; an unreadable image or mask marks
   that item refused and the run goes on.
3. `results_zip` packs what finished, with a list of what did not.
"""

from __future__ import annotations

import dataclasses
import io
import secrets
import stat
import threading
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core import masks
from core.admission import PLACES
from core.errors import BadParameterError, BusyError, StudioError
from core.images import load_image
from core.jobs import JobQueue, JobState, JobStatus, UnknownJobError
from core.requests import InpaintRequest
from core.runner import Request
from core.settings import ImageLimits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MASK_FOLDERS = ("mask", "masks")
MASK_STEM_SUFFIXES = ("_mask", "-mask", ".mask")
_IGNORED_PARTS = ("__MACOSX",)  # resource forks macOS adds to archives


@dataclass(frozen=True)
class BatchLimits:
    max_files: int = 200  # images plus masks
    max_file_bytes: int = 25 * 1024 * 1024  # uncompressed, per file
    max_total_bytes: int = 400 * 1024 * 1024  # uncompressed, the whole batch
    max_ratio: float = 200.0  # uncompressed / compressed per ZIP entry; real images compress far less


@dataclass(frozen=True)
class NamedFile:
    name: str  # a relative POSIX path inside the upload or the ZIP; never a path on this machine
    data: bytes = field(repr=False)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem


# -- 1. inputs -------------------------------------------------------------------------------------


def _safe_member_name(name: str) -> str | None:
    """The entry's path as a clean relative POSIX path, or None if it could escape a folder."""
    path = name.replace("\\", "/")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):  # absolute, or a Windows drive
        return None
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts):
        return None
    return "/".join(parts)


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def read_zip(data: bytes, limits: BatchLimits = BatchLimits()) -> tuple[list[NamedFile], list[str]]:
    """The image files in a ZIP and the notes about entries skipped (unsafe names, links,
    encrypted or non-image entries). Raises BadParameterError when the archive as a whole is
    refused: not a ZIP, too many files, too large, or compressed suspiciously well (a zip bomb).
    Sizes are checked on the declared values first and then on the bytes actually read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise BadParameterError("the ZIP file is damaged or not a ZIP; upload a .zip of images and masks") from None
    files, notes = [], []
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        if len(entries) > limits.max_files:
            raise BadParameterError(f"the ZIP holds {len(entries)} files; the limit is {limits.max_files}")
        declared_total = sum(info.file_size for info in entries)
        if declared_total > limits.max_total_bytes:
            raise BadParameterError(
                f"the ZIP unpacks to {declared_total / 2**20:.0f} MB; the limit is {limits.max_total_bytes / 2**20:.0f} MB"
            )
        read_total = 0
        for info in entries:
            name = _safe_member_name(info.filename)
            shown = info.filename[:80]
            if name is None:
                notes.append(f"{shown}: skipped (its path points outside the archive)")
                continue
            parts = name.split("/")
            if any(part in _IGNORED_PARTS for part in parts) or parts[-1].startswith("."):
                continue  # hidden files and macOS metadata: not the user's images
            if _is_link(info):
                notes.append(f"{name}: skipped (a link, not a file)")
                continue
            if info.flag_bits & 0x1:
                notes.append(f"{name}: skipped (encrypted)")
                continue
            if not name.lower().endswith(IMAGE_SUFFIXES):
                notes.append(f"{name}: skipped (not a PNG, JPEG or WebP file)")
                continue
            if info.file_size > limits.max_file_bytes:
                notes.append(
                    f"{name}: skipped ({info.file_size / 2**20:.0f} MB; the limit is {limits.max_file_bytes / 2**20:.0f} MB per file)"
                )
                continue
            if info.file_size > limits.max_ratio * max(1, info.compress_size):  # every entry: many small bombs add up
                raise BadParameterError(
                    f"the ZIP was refused: {name} is compressed {info.file_size / max(1, info.compress_size):.0f} to 1, like a zip bomb"
                )
            content = _read_member(archive, info, limits.max_file_bytes)
            if content is None:
                notes.append(f"{name}: skipped (damaged in the ZIP)")
                continue
            read_total += len(content)
            if read_total > limits.max_total_bytes:
                raise BadParameterError(f"the ZIP unpacks to more than {limits.max_total_bytes / 2**20:.0f} MB")
            files.append(NamedFile(name, content))
    return files, notes


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes | None:
    """At most `max_bytes` (+1 to notice more); None when the entry is damaged or larger than declared."""
    try:
        with archive.open(info) as stream:
            content = stream.read(max_bytes + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        return None
    return None if len(content) > max_bytes else content


def is_mask_name(name: str) -> bool:
    """A file under a `masks/` folder, or named like `photo_mask.png`."""
    path = PurePosixPath(name)
    folders = [part.lower() for part in path.parts[:-1]]
    return any(folder in MASK_FOLDERS for folder in folders) or path.stem.lower().endswith(MASK_STEM_SUFFIXES)


def mask_key(name: str) -> str:
    """The image stem a mask file belongs to: `masks/photo.png` and `photo_mask.png` -> `photo`."""
    stem = PurePosixPath(name).stem
    for suffix in MASK_STEM_SUFFIXES:
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def split_images_and_masks(files: Iterable[NamedFile]) -> tuple[list[NamedFile], list[NamedFile]]:
    images, found_masks = [], []
    for file in files:
        (found_masks if is_mask_name(file.name) else images).append(file)
    return images, found_masks


@dataclass
class BatchItem:
    name: str  # unique output name (file name without extension)
    image: NamedFile
    mask: NamedFile | None
    problem: str | None = None  # refused before or at submission; the item is finished
    job_id: str | None = None
    final: JobStatus | None = None  # the job's last status once it finished (the queue may drop it later)
    png: bytes | None = field(default=None, repr=False)  # the result, kept once the job is done
    parameters: dict | None = field(default=None, repr=False)  # the result's parameters, kept with it


@dataclass
class RequestItem:
    """An item whose request is complete before the run starts (prompt batches, comparison grids)."""

    name: str
    request: Request
    problem: str | None = None
    job_id: str | None = None
    final: JobStatus | None = None
    png: bytes | None = field(default=None, repr=False)
    parameters: dict | None = field(default=None, repr=False)


def unique_names(stems: Sequence[str]) -> list[str]:
    """Stems made unique in order: photo, photo (2), photo (3)…"""
    seen: dict[str, int] = {}
    names = []
    taken = set(stems)
    for stem in stems:
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        name = stem if count == 1 else f"{stem} ({count})"
        while count > 1 and name in taken:
            count += 1
            name = f"{stem} ({count})"
        taken.add(name)
        names.append(name)
    return names


def match_items(
    images: Sequence[NamedFile], mask_files: Sequence[NamedFile] = (), shared_mask: NamedFile | None = None
) -> list[BatchItem]:
    """One item per image: with `shared_mask` every image gets it; otherwise the mask whose key
    (see `mask_key`) is the image's stem. An image with no mask, or whose stem several masks
    claim, is an item with a problem (shown, never run)."""
    by_key: dict[str, list[NamedFile]] = {}
    for mask in mask_files:
        by_key.setdefault(mask_key(mask.name), []).append(mask)
    items = []
    for image, name in zip(images, unique_names([image.stem for image in images]), strict=True):
        if shared_mask is not None:
            items.append(BatchItem(name, image, shared_mask))
            continue
        candidates = by_key.get(image.stem, [])
        if len(candidates) == 1:
            items.append(BatchItem(name, image, candidates[0]))
        elif not candidates:
            items.append(BatchItem(name, image, None, f"no mask named like {image.stem} (e.g. masks/{image.stem}.png)"))
        else:
            shown = ", ".join(mask.name for mask in candidates[:3])
            items.append(BatchItem(name, image, None, f"several masks match {image.stem}: {shown}"))
    return items


def check_items(items: Sequence[BatchItem], limits: ImageLimits = ImageLimits()) -> list[BatchItem]:
    """Every ready item's image and mask decoded once, before Run, so the counts a page shows are the
    truth: an unreadable, refused or empty file becomes that item's problem (with the reason), the
    rest stay ready. Pixels are dropped as soon as each item is checked."""
    checked = []
    for item in items:
        if item.problem is None:
            try:
                try:
                    image = load_image(item.image.data, limits)
                except StudioError as error:
                    raise BadParameterError(f"{item.image.name}: {error.message}") from None
                mask = masks.mask_from_image(item.mask.data, image.size)
                masks.require_not_empty(mask)
            except StudioError as error:
                item = dataclasses.replace(item, problem=error.message)
        checked.append(item)
    return checked


# -- 2. running --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemView:
    name: str
    status: JobStatus | None  # None: not in the queue (waiting to be submitted, refused, or dropped)
    problem: str | None
    waiting: bool  # not yet submitted

    @property
    def finished(self) -> bool:
        if self.status is not None:
            return self.status.state.finished
        return not self.waiting


class BatchRun:
    """One batch: its items, the request every item shares, and its queue group.

    A page drives it from its polling fragment; once started, a feeder thread of this process also
    keeps submitting, so the batch runs to the end whether or not its page stays open."""

    def __init__(
        self,
        items: Sequence[BatchItem],
        template: InpaintRequest | None,
        *,
        limits: ImageLimits = ImageLimits(),
        kind: str = "batch",
    ):
        self.group = f"{kind}-{secrets.token_hex(6)}"
        self.items = list(items)
        self.template = template
        self.limits = limits
        self.cancelled = False
        self._lock = threading.RLock()  # the page's fragment and the feeder both submit
        self._feeder: threading.Thread | None = None

    @property
    def waiting(self) -> list[BatchItem]:
        return [item for item in self.items if item.job_id is None and item.problem is None]

    def submit_more(self, queue: JobQueue, session: str, *, in_flight: int) -> int:
        """Submit waiting items while fewer than `in_flight` of this batch are unfinished, and start
        the feeder that submits the rest as jobs finish. Returns how many were submitted now. A busy
        queue is not an error: the rest wait."""
        with self._lock:
            if self._feeder is None and self.waiting and not self.cancelled:
                self._feeder = threading.Thread(
                    target=self._feed, args=(queue, session, in_flight), name=f"feeder-{self.group}", daemon=True
                )
                self._feeder.start()
            return self._submit_some(queue, session, in_flight=in_flight)

    def _feed(self, queue: JobQueue, session: str, in_flight: int) -> None:
        while not self.cancelled and self.waiting and not queue.closing:
            with self._lock:
                self._submit_some(queue, session, in_flight=in_flight)
            unfinished = [s for s in queue.jobs(session=session, group=self.group) if not s.state.finished]
            if unfinished:
                queue.wait(unfinished[0].id, timeout=1.0)
            else:
                time.sleep(0.5)

    def _submit_some(self, queue: JobQueue, session: str, *, in_flight: int) -> int:
        if self.cancelled:
            return 0
        unfinished = sum(1 for status in queue.jobs(session=session, group=self.group) if not status.state.finished)
        submitted = 0
        for item in self.waiting:
            if unfinished >= in_flight:
                break
            try:
                with PLACES.place(queue, session):  # a queue place first: a full queue costs no decoding
                    request = self._request(item)
                    item.job_id = queue.submit(
                        request, session=session, label=item.name, group=self.group, heartbeat=True
                    )
                    PLACES.submitted()  # the queue counts this job from now on
            except BusyError:
                break
            except StudioError as error:
                item.problem = error.message
                continue
            unfinished += 1
            submitted += 1
        return submitted

    def _request(self, item: BatchItem) -> InpaintRequest:
        image = load_image(item.image.data, self.limits)
        mask = masks.mask_from_image(item.mask.data, image.size, self.limits)
        return dataclasses.replace(self.template, image=image, mask=mask)

    def cancel(self, queue: JobQueue, session: str) -> None:
        """Stop what has not finished; finished results stay."""
        with self._lock:
            self.cancelled = True
            for item in self.waiting:
                item.problem = "cancelled before it started"
        queue.cancel_group(self.group, session=session)

    def views(self, queue: JobQueue) -> list[ItemView]:
        """Every item's state now. Finished jobs are read once and kept (with their PNG), so the
        batch still shows and downloads them after the queue has dropped the jobs."""
        views = []
        with self._lock:
            for item in self.items:
                status = item.final
                if status is None and item.job_id is not None:
                    status = self._refresh(queue, item)
                views.append(ItemView(item.name, status, item.problem, item.job_id is None and item.problem is None))
        return views

    @staticmethod
    def _status(queue: JobQueue, item: BatchItem) -> JobStatus | None:
        try:
            return queue.status(item.job_id)
        except UnknownJobError:
            return None

    def _refresh(self, queue: JobQueue, item: BatchItem) -> JobStatus | None:
        """The item's status, read once: a finished job's result is read before anyone sees it finished
        (two reads let a job finish in between, shown done with no result)."""
        status = self._status(queue, item)
        if status is None:
            item.problem = item.problem or "the studio no longer has this job (it restarted); run the batch again"
            item.job_id = None
            return None
        if not status.state.finished:
            return status
        if status.state is JobState.DONE:
            try:
                result = queue.result(item.job_id)
                item.png, item.parameters = result.pngs[0], result.parameters
            except StudioError:  # ResultGoneError among them
                item.problem = "the result could not be read back; run the batch again"
        item.final = status
        return status

    def finished(self, queue: JobQueue) -> bool:
        return all(view.finished for view in self.views(queue))

    def results(self) -> list[tuple[str, bytes]]:
        """(output name, PNG) for every item that is done, in input order."""
        return [(item.name, item.png) for item in self.items if item.png is not None]

    def problems(self) -> list[tuple[str, str]]:
        """(output name, why) for every item that finished without a result."""
        found = []
        for item in self.items:
            if item.png is not None:
                continue
            if item.problem is not None:
                found.append((item.name, item.problem))
            elif item.final is not None and item.final.state is JobState.FAILED:
                found.append((item.name, item.final.error or "failed"))
            elif item.final is not None and item.final.state is JobState.CANCELLED:
                found.append((item.name, "cancelled"))
        return found


class RequestRun(BatchRun):
    """A run of `RequestItem`s: each item already holds its request (no files to decode)."""

    def __init__(self, items: Sequence[RequestItem], *, kind: str):
        super().__init__(items, None, kind=kind)

    def _request(self, item: RequestItem) -> Request:
        return item.request


def drive(
    run: BatchRun, queue: JobQueue, session: str, lock: threading.Lock, *, in_flight: int, poll_s: float = 0.1
) -> threading.Thread:
    """Run `run` to the end in a daemon thread (the API's batches; pages drive theirs from the page).
    Others touch the run only while holding `lock`, as this thread does."""

    def loop() -> None:
        while True:
            with lock:
                run.submit_more(queue, session, in_flight=in_flight)
                if run.finished(queue):
                    return
                queue.touch_sessions([session])  # the batch still watches its jobs: never abandoned
            time.sleep(poll_s)

    thread = threading.Thread(target=loop, name=f"batch-{run.group}", daemon=True)
    thread.start()
    return thread


def model_order(items: Sequence[RequestItem]) -> list[RequestItem]:
    """The items with each model's together, models in order of first appearance (stable within a
    model), so a run loads each model once however the user ordered them."""
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(item.request.model, len(first_seen))
    return sorted(items, key=lambda item: first_seen[item.request.model])


# -- 3. results ------------------------------------------------------------------------------------


def results_zip(results: Iterable[tuple[str, bytes]], problems: Iterable[tuple[str, str]] = ()) -> bytes:
    """`name.png` per result (already unique names), and `errors.txt` listing what did not finish."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for name, png in results:
            archive.writestr(f"{name}.png", png)
        lines = [f"{name}: {problem}" for name, problem in problems]
        if lines:
            archive.writestr("errors.txt", "\n".join(lines) + "\n")
    return buffer.getvalue()


__all__ = [
    "BatchItem",
    "BatchLimits",
    "BatchRun",
    "ItemView",
    "NamedFile",
    "RequestItem",
    "RequestRun",
    "check_items",
    "drive",
    "is_mask_name",
    "mask_key",
    "match_items",
    "model_order",
    "read_zip",
    "results_zip",
    "split_images_and_masks",
    "unique_names",
]
