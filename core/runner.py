"""Request -> Result: the one path every entry point (pages, CLI, API, batch, queue) takes.

`Studio.prepare` validates and completes a request and computes its cache key without touching
a model; `Studio.run` serves it from the result store or runs the engine, with the cross-cutting
image work (crop around the mask, working resolution, paste back only masked pixels) done here
once for every engine.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

from PIL import Image

from core import masks, outpaint, region
from core.catalogue import Catalogue, ModelSpec
from core.engines import engine_version, load_engine
from core.engines.base import Generated, Reporter, silent_reporter
from core.errors import BadMaskError, BadParameterError, EngineError, OutOfMemoryError, StudioError
from core.images import to_model_rgb
from core.keys import image_digest, request_key
from core.pool import ModelPool
from core.prompts import prompt_warnings
from core.provenance import encode_png
from core.requests import (
    MAX_SEED,
    GenerateRequest,
    InpaintRequest,
    OutpaintRequest,
    SegmentRequest,
    image_parameters,
    image_seed,
)
from core.settings import ImageLimits, Settings
from core.store import ResultStore, StoredResult

log = logging.getLogger(__name__)

Request = GenerateRequest | InpaintRequest | OutpaintRequest
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Prepared:
    """A validated, complete request (model defaults applied, seed drawn) and its cache key."""

    request: Request
    spec: ModelSpec
    key: str
    parameters: dict[str, Any]  # what every output PNG carries
    total_steps: int  # steps the engine will report, for progress and ETA
    work_pixels: int  # pixels the model works on, for ETA
    warnings: tuple[str, ...] = ()  # for people: e.g. a prompt the text encoder will cut short


@dataclass(frozen=True, eq=False)
class Result:
    """A finished run's images and their PNGs, each made only when first asked for: encoding a
    4096-px result costs more than the edit itself, and a cache hit need not decode anything."""

    parameters: dict[str, Any]
    key: str
    cached: bool
    filtered: tuple[bool, ...]
    elapsed_s: float
    _load_images: Callable[[], tuple[Image.Image, ...]] = field(repr=False)
    _encoded: tuple[bytes, ...] | None = field(default=None, repr=False)

    @property
    def seed(self) -> int:
        return self.parameters["seed"]

    def seed_of(self, index: int) -> int:
        """The seed image `index` was made from (its PNG records it, to be made again alone)."""
        return image_seed(self.seed, index) if self.parameters.get("num_images", 1) > 1 else self.seed

    @cached_property
    def images(self) -> tuple[Image.Image, ...]:
        return self._load_images()

    @cached_property
    def pngs(self) -> tuple[bytes, ...]:
        """PNGs carrying their parameters (deterministic: a hit gives the bytes a miss gave)."""
        if self._encoded is not None:
            return self._encoded
        return tuple(encode_png(image, image_parameters(self.parameters, i)) for i, image in enumerate(self.images))

    def held_bytes(self) -> int:
        """Memory this result holds now: the images its loader keeps (an edit keeps its input), the
        images once loaded and the PNGs once encoded, each counted once."""
        kept, blobs = _held_by(self._load_images)
        images = {id(image): image for image in kept}
        images.update((id(image), image) for image in self.__dict__.get("images", ()))
        blobs.update((id(png), png) for png in self.__dict__.get("pngs") or self._encoded or ())
        pixels = sum(image.width * image.height * len(image.getbands()) for image in images.values())
        return pixels + sum(map(len, blobs.values()))

    def __reduce__(self):  # st.cache_data copies results by pickling: send the PNGs, not loaders
        fields = (self.parameters, self.key, self.cached, self.filtered, self.elapsed_s, self.pngs)
        return result_from_pngs, fields


def _held_by(loader: Callable) -> tuple[list[Image.Image], dict[int, bytes]]:
    """The images and encoded files a loader keeps alive (a partial's arguments, or a closure's)."""
    if isinstance(loader, partial):
        values = list(loader.args)
    else:
        values = [cell.cell_contents for cell in (getattr(loader, "__closure__", None) or ())]
    images, blobs = [], {}
    for value in values:
        items = value if isinstance(value, (tuple, list)) else getattr(value, "pngs", (value,))
        for item in items:
            if isinstance(item, Image.Image):
                images.append(item)
            elif isinstance(item, bytes):
                blobs[id(item)] = item
    return images, blobs


def result_from_pngs(parameters, key, cached, filtered, elapsed_s, pngs) -> Result:
    """A result from its PNGs (a copy sent to another process), decoded only when its images are asked for."""
    return Result(parameters, key, cached, filtered, elapsed_s, lambda: tuple(_decoded(png) for png in pngs), pngs)


class Studio:
    def __init__(
        self,
        catalogue: Catalogue,
        pool: ModelPool,
        store: ResultStore | None,
        image_limits: ImageLimits = ImageLimits(),
    ):
        self.catalogue = catalogue
        self.pool = pool
        self.store = store
        self.image_limits = image_limits  # for callers that load images on this studio's behalf
        self._segmenters: dict[str, Any] = {}  # apart from the pool: small, and must not evict the edit model
        self._segmenter_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Studio:
        settings = settings or Settings.from_env()
        return cls(
            Catalogue.load(settings.models_file),
            ModelPool(settings.max_resident_models),
            ResultStore(settings.cache_dir / "results", settings.cache_max_bytes),
            settings.image_limits,
        )

    # 1. Validate and complete, with no model loaded.
    def prepare(self, request: Request, *, allow_local_path: bool = False) -> Prepared:
        spec = self.catalogue.resolve(request.model, allow_local_path=allow_local_path)
        request.validate(spec)
        request = request.with_defaults(spec)
        request.validate(spec)  # defaults from a user catalogue are checked like user input
        kind = spec.kind  # what the engine reads and how it counts progress (core/engines/__init__.py)
        if isinstance(request, InpaintRequest):
            image_digests = {"image": image_digest(request.image), "mask": image_digest(request.mask)}
            width, height = request.image.size
            side = spec.working_resolution
            work_pixels = side * side if side and not request.whole_image else width * height
            total_steps = kind.total_steps(request.num_inference_steps, request.strength, 1)
        elif isinstance(request, OutpaintRequest):
            image_digests = {"image": image_digest(request.image)}
            _check_extended_size(request.sides().new_size(request.image.size), self.image_limits)
            side = outpaint_resolution(spec)
            tiles = outpaint.tile_count(request.image.size, request.sides(), side, whole_strips(spec))
            work_pixels = side * side
            total_steps = tiles * kind.total_steps(request.num_inference_steps, request.strength, 1)
        else:
            image_digests = {}
            work_pixels = request.width * request.height * request.num_images
            total_steps = kind.total_steps(request.num_inference_steps, 1.0, request.num_images)
        version = engine_version(spec)
        # The key and the PNGs hold exactly what the output depends on: the fields this engine reads.
        read = request.parameters_read_by(spec)
        key = request_key(read, model_source=spec.source, engine_version=version, image_digests=image_digests)
        parameters = {
            **read,
            "model_name": spec.name,
            "model_source": spec.source,
            "engine": version,
            **{f"{name}_digest": digest for name, digest in image_digests.items()},
        }
        return Prepared(request, spec, key, parameters, total_steps, work_pixels, prompt_warnings_for(spec, parameters))

    def cached(self, prepared: Prepared) -> Result | None:
        if self.store is None:
            return None
        stored = self.store.get(prepared.key)
        image = getattr(prepared.request, "image", None)  # an edit or an extension is stored around its input
        return None if stored is None else _from_store(prepared.key, stored, image)

    def stored_result(self, key: str, image: Image.Image | None = None) -> Result | None:
        """A stored result by its key (an edit's is composed onto its input `image`), or None."""
        stored = self.store.get(key) if self.store is not None else None
        if stored is None or (_needs_input(stored.metadata) and image is None):
            return None
        return _from_store(key, stored, image)

    # 2. Serve from the store, or run the engine and store the result.
    def run(self, prepared: Prepared, report: Reporter = silent_reporter) -> Result:
        hit = self.cached(prepared)
        if hit is not None:
            return hit
        started = time.perf_counter()
        prepared.spec.require_available()
        try:
            engine = self.pool.get(prepared.spec)
            patch = grown = None
            if isinstance(prepared.request, InpaintRequest):
                patch, filtered = _inpaint(engine, prepared, report)
            elif isinstance(prepared.request, OutpaintRequest):
                images, filtered = self._outpaint(engine, prepared, report)
                grown = prepared.request.sides()
            else:
                generated = engine.text_to_image(prepared.request, report)
                images, filtered = tuple(generated.images), _flags(generated)
        except StudioError:
            raise
        except MemoryError as error:
            raise OutOfMemoryError("ran out of memory: lower the size, steps or number of images") from error
        except Exception as error:
            log.exception("engine %s failed", prepared.spec.id)
            raise EngineError(
                f"{prepared.spec.name} failed while running; the details are in the server log"
            ) from error
        parameters = {**prepared.parameters, "filtered": list(filtered)}
        encoded, store = None, self.store is not None and not any(filtered)
        metadata = {"parameters": parameters, "filtered": list(filtered)}
        if patch is not None:  # an edit is its changed region; the rest is the request's own image (in the key)
            region, pixels = patch
            if store:
                self.store.put(prepared.key, (encode_png(pixels, parameters),), {**metadata, "region": list(region)})
            load_images = partial(_edited, prepared.request.image, pixels, region)
        elif grown is not None:  # an extension is its new bands; the photo is the request's own image (in the key)
            if store:
                size = prepared.request.image.size
                bands = outpaint.bands(size, grown)
                pngs = tuple(encode_png(images[0].crop(band), parameters) for band in bands)
                frame = {"size": list(grown.new_size(size)), "photo_at": [grown.left, grown.top], "bands": bands}
                self.store.put(prepared.key, pngs, {**metadata, "frame": frame})
            load_images = partial(tuple, images)
        else:
            if store:
                encoded = tuple(encode_png(image, image_parameters(parameters, i)) for i, image in enumerate(images))
                self.store.put(prepared.key, encoded, metadata)
            load_images = partial(tuple, images)
        elapsed = time.perf_counter() - started
        return Result(parameters, prepared.key, False, tuple(filtered), elapsed, load_images, encoded)

    def _outpaint(self, engine, prepared: Prepared, report: Reporter) -> tuple[tuple[Image.Image], tuple[bool, ...]]:
        """The extended image (core.outpaint does the geometry and the tiles), and its safety flag."""
        request: OutpaintRequest = prepared.request
        spec = prepared.spec
        tiled = _TileReporter(report, prepared.total_steps)
        flags: list[bool] = []

        def paint(image: Image.Image, mask: Image.Image, index: int) -> Image.Image:
            tile_request = dataclasses.replace(request, seed=(request.seed + index) % (MAX_SEED + 1))
            generated = engine.inpaint(image, mask, tile_request, tiled.for_tile(index))
            flags.extend(_flags(generated))
            return generated.images[0]

        image = outpaint.fill(
            request.image,
            request.sides(),
            working_resolution=outpaint_resolution(spec),
            size_multiple=spec.size_multiple,
            paint=paint,
            prefill=self._prefill(request) if spec.generative else None,
            seed=request.seed,
            whole_strips=whole_strips(spec),
        )
        return (image,), (any(flags),)

    def _prefill(self, request: OutpaintRequest) -> outpaint.Remover:
        """LaMa when it is downloaded and can stay resident beside the diffusion model, else OpenCV."""
        removers = [
            spec for spec in self.catalogue.for_task("inpaint") if not spec.generative and spec.kind.has_weights
        ]
        lama = max(removers, key=lambda spec: spec.kind.remover_rank, default=None)  # the best learned remover
        if lama is None or self.pool.max_resident < 2 or not lama.availability().ready:
            return outpaint.opencv_prefill
        try:
            remover = self.pool.get(lama)
        except StudioError:
            log.warning("LaMa could not be loaded for the pre-fill; using OpenCV", exc_info=True)
            return outpaint.opencv_prefill
        return lambda image, mask: remover.inpaint(image, mask, request, silent_reporter).images[0]

    def segment(self, request: SegmentRequest, *, image_digest_hint: str | None = None) -> Image.Image:
        """The "L" mask (255 = selected) for clicks and/or a box. The photo's embedding is kept by its
        digest, so further clicks on it only run the decoder."""
        spec = self.catalogue.get(request.model)
        request.validate(spec)
        segmenter = self.segmenter(spec)
        digest = image_digest_hint or image_digest(request.image)
        return segmenter.segment(request.image, digest, request.points, request.box)

    def segmenter(self, spec: ModelSpec):
        with self._segmenter_lock:
            loaded = self._segmenters.get(spec.id)
            if loaded is None or loaded.spec != spec:
                spec.require_available()
                self._segmenters.clear()  # one segmenter at a time
                loaded = self._segmenters[spec.id] = load_engine(spec)
            return loaded

    def generate(self, request: GenerateRequest, report: Reporter = silent_reporter, **options) -> Result:
        return self.run(self.prepare(request, **options), report)

    def inpaint(self, request: InpaintRequest, report: Reporter = silent_reporter, **options) -> Result:
        return self.run(self.prepare(request, **options), report)


def outpaint_resolution(spec: ModelSpec) -> int:
    """The side an outpaint tile is worked at: the model's, or (native-size removers) a size at which
    OpenCV's fill stays quick; the band is smooth fill either way."""
    return spec.working_resolution or outpaint.NATIVE_ENGINE_RESOLUTION


def whole_strips(spec: ModelSpec) -> bool:
    """A native-size remover fills each strip in one call at `outpaint_resolution` (see core.outpaint)."""
    return not spec.generative and not spec.working_resolution


def _check_extended_size(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise BadParameterError(
            f"the extended image would be {width}x{height}; the limit is {limits.max_side} px a side "
            f"and {limits.max_pixels / 1e6:g} MP: extend by less"
        )
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise BadParameterError(f"the extended image would be {width}x{height}, longer than {limits.max_aspect:g}:1")


class _TileReporter:
    """Progress over all tiles: tile i's step s of t is step i*t + s of the whole run."""

    def __init__(self, report: Reporter, total: int):
        self._report, self._total, self._per_tile = report, total, None

    def for_tile(self, index: int) -> Reporter:
        def report(step: int, total: int, preview=None) -> None:
            self._per_tile = self._per_tile or total
            self._report(min(self._total, index * self._per_tile + step), self._total, preview)

        return report


def _flags(generated: Generated) -> tuple[bool, ...]:
    return tuple(generated.filtered) or (False,) * len(generated.images)


def _inpaint(engine, prepared: Prepared, report: Reporter) -> tuple[tuple[Box, Image.Image], tuple[bool, ...]]:
    """The edited region (box, pixels) and the safety flags; the full image is composed only when asked for."""
    request: InpaintRequest = prepared.request
    spec = prepared.spec
    between = partial(_check_cancelled, report)
    # 1. The hard mask goes to the model; the feathered one only to the final composite.
    hard, feathered = masks.prepare(
        request.mask,
        invert_mask=request.invert_mask,
        mask_grow=request.mask_grow,
        mask_blur=request.mask_blur,
        between=between,
    )
    between()
    masks.require_not_empty(hard)
    if masks.bounding_box(feathered) is None:  # a few pixels under a wide feather blur to nothing at all
        raise BadMaskError(
            f"the mask is too small for a feather of {request.mask_blur} px: nothing would change; "
            "paint a larger area or lower the feather"
        )
    # 2. The region to process: around the mask (cost follows the mask), or the whole image.
    width, height = request.image.size
    if request.whole_image:
        box = (0, 0, width, height)
    else:
        left, top, right, bottom = masks.bounding_box(feathered)
        aspect = 1.0 if spec.working_resolution else (right - left) / (bottom - top)
        box = region.crop_box(feathered, padding=request.padding, aspect=aspect, min_side=spec.working_resolution)
    between()
    # 3. At the model's working resolution, and back.
    crop = to_model_rgb(request.image.crop(box))
    between()
    fit = region.plan_fit(crop.size, spec.working_resolution, spec.size_multiple)
    model_image, model_mask = fit.apply(crop), fit.apply(hard.crop(box), is_mask=True)
    between()
    generated = engine.inpaint(model_image, model_mask, request, report)
    restored = fit.restore(generated.images[0])
    # 4. Only masked pixels change.
    return (box, region.blend_region(request.image, restored, feathered, box)), _flags(generated)


def _check_cancelled(report: Reporter) -> None:
    """Between the steps before an engine's first report (a 48 MP edit spends seconds preparing its mask
    and crop): a reporter that can tell whether the job was cancelled without reporting progress (the
    queue's worker: `report.check`) stops the run there, so a cancel lands within about a second."""
    check = getattr(report, "check", None)
    if check is not None:
        check()


def prompt_warnings_for(spec: ModelSpec, parameters: Mapping[str, Any]) -> tuple[str, ...]:
    """What to tell people about a run's prompts (from its parameters, so a stored result says it too):
    only for engines that read a prompt through a text encoder with a declared limit."""
    kind, task = spec.kind, parameters.get("task", "")
    if kind.prompt_limit is None or not kind.reads(task, "prompt"):
        return ()
    return prompt_warnings(parameters.get("prompt", ""), parameters.get("negative_prompt", ""), limit=kind.prompt_limit)


def _edited(image: Image.Image, pixels: Image.Image, box: Box) -> tuple[Image.Image, ...]:
    edited = image.copy()
    edited.paste(pixels, box[:2])
    return (edited,)


def _needs_input(metadata: dict) -> bool:
    """Whether a stored result holds only what changed (an edit's region, an extension's bands)."""
    return metadata.get("region") is not None or metadata.get("frame") is not None


def _framed(image: Image.Image, bands: list[Image.Image], frame: dict) -> tuple[Image.Image, ...]:
    """An extension from its stored bands around the request's own photo."""
    canvas = Image.new(image.mode, tuple(frame["size"]))
    canvas.paste(image, tuple(frame["photo_at"]))
    for band, box in zip(bands, frame["bands"], strict=True):
        canvas.paste(band.convert(image.mode), tuple(box[:2]))
    return (canvas,)


def _from_store(key: str, stored: StoredResult, image: Image.Image | None) -> Result:
    metadata = stored.metadata
    region, frame = metadata.get("region"), metadata.get("frame")

    def load_images() -> tuple[Image.Image, ...]:
        decoded = [_decoded(png) for png in stored.pngs]
        if frame is not None:
            return _framed(image, decoded, frame)
        return tuple(decoded) if region is None else _edited(image, decoded[0], tuple(region))

    filtered = tuple(metadata.get("filtered", [False] * len(stored.pngs)))
    encoded = None if _needs_input(metadata) else tuple(stored.pngs)
    return Result(dict(metadata["parameters"]), key, True, filtered, 0.0, load_images, encoded)


def _decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image if image.mode in ("RGB", "RGBA") else image.convert("RGB")


__all__ = ["Prepared", "Result", "Studio"]
