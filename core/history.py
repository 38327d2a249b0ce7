"""The history of results: every entry of the result store, newest first, for the History page.

Listing reads only each entry's meta.json (`ResultStore.listing`), so 2,000 results list in well
under a second; thumbnails are made once per entry, kept inside it (`ResultStore.derived`) and
leave with it when it is evicted or deleted. Parameters restore a request: `generate_fields`
gives the Generate page's fields back from any result's parameters (ours or a dropped PNG's).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image

from core.store import ListedEntry, ResultStore, StoredResult

THUMBNAIL_SIDE = 256
THUMBNAIL_NAME = f"thumb-{THUMBNAIL_SIDE}.webp"
TASK_NAMES = {"txt2img": "Generate", "inpaint": "Inpaint", "outpaint": "Extend"}  # others show as their name


@dataclass(frozen=True)
class HistoryEntry:
    key: str
    created: float
    parameters: dict[str, Any]
    images: int
    region: tuple[int, int, int, int] | None  # an edit keeps only its changed region (left, top, right, bottom)

    @classmethod
    def of(cls, listed: ListedEntry) -> HistoryEntry:
        metadata = listed.metadata
        parameters = metadata.get("parameters")
        region = metadata.get("region")
        return cls(
            listed.key,
            listed.created,
            dict(parameters) if isinstance(parameters, dict) else {},
            listed.images,
            tuple(region) if isinstance(region, list) and len(region) == 4 else None,
        )

    @property
    def task(self) -> str:
        return str(self.parameters.get("task", ""))

    @property
    def model(self) -> str:
        return str(self.parameters.get("model", ""))

    @property
    def prompt(self) -> str:
        return str(self.parameters.get("prompt", ""))

    @property
    def size(self) -> tuple[int, int] | None:
        """The generated size, or an edit's changed region's size (the photo's size is not stored)."""
        if self.region is not None:
            left, top, right, bottom = self.region
            return right - left, bottom - top
        width, height = self.parameters.get("width"), self.parameters.get("height")
        return (width, height) if isinstance(width, int) and isinstance(height, int) else None

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.created).strftime("%Y-%m-%d %H:%M")

    def caption(self) -> str:
        size = f"{self.size[0]}×{self.size[1]}" if self.size else "?"
        region = " region" if self.region is not None else ""
        prompt = self.prompt if len(self.prompt) <= 60 else self.prompt[:59] + "…"
        return f"{prompt or '(no prompt)'} · {self.model} · {size}{region} · {self.when}"

    def matches(self, text: str = "", models: Iterable[str] = (), tasks: Iterable[str] = ()) -> bool:
        models, tasks = set(models), set(tasks)
        if models and self.model not in models:
            return False
        if tasks and self.task not in tasks:
            return False
        needle = text.strip().lower()
        if not needle:
            return True
        haystack = " ".join(
            str(self.parameters.get(name, "")) for name in ("prompt", "negative_prompt", "model", "model_name", "seed")
        )
        return needle in haystack.lower()


def history(store: ResultStore) -> list[HistoryEntry]:
    """Every result in the store, newest first."""
    return [HistoryEntry.of(listed) for listed in store.listing()]


def filtered(entries: Iterable[HistoryEntry], *, text: str = "", models=(), tasks=()) -> list[HistoryEntry]:
    return [entry for entry in entries if entry.matches(text, models, tasks)]


def thumbnail(store: ResultStore, key: str) -> bytes | None:
    """A WebP at most THUMBNAIL_SIDE on a side of the entry's first image; made once, then read back."""
    return store.derived(key, THUMBNAIL_NAME, _make_thumbnail)


def _make_thumbnail(stored: StoredResult) -> bytes:
    with Image.open(io.BytesIO(stored.pngs[0])) as image:
        image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        small = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
        small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="WEBP", quality=80, method=4)
    return buffer.getvalue()


def pngs(store: ResultStore, key: str) -> tuple[bytes, ...]:
    """The entry's PNGs, verified (empty when it is gone or damaged)."""
    stored = store.get(key)
    return () if stored is None else stored.pngs


_GENERATE_FIELDS = (
    "prompt",
    "negative_prompt",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "scheduler",
    "width",
    "height",
    "num_images",
)


def generate_fields(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The GenerateRequest fields that `parameters` (a result's, or a PNG's) set, plus `model`."""
    fields = {name: parameters[name] for name in _GENERATE_FIELDS if parameters.get(name) is not None}
    if parameters.get("model"):
        fields["model"] = parameters["model"]
    return fields


__all__ = [
    "HistoryEntry",
    "THUMBNAIL_SIDE",
    "filtered",
    "generate_fields",
    "history",
    "pngs",
    "thumbnail",
]
