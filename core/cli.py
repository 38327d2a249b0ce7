"""The command line: models, generate, inpaint, batch, info, download, worker, queue.

Bad input exits with status 2 and one line on stderr, never a traceback; long work shows a
progress bar on stderr; a cache hit says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import StudioError
from core.prompt_batch import DEFAULT_SEEDS
from core.requests import Cli, GenerateRequest, InpaintRequest, OutpaintRequest, annotations_of, fields, leaf_types

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
log = logging.getLogger("core.cli")


class UsageError(StudioError):
    code = "usage"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # the Hub client's retry chatter would bury our one-line messages
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    try:
        return args.command(args)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        log.debug("unexpected failure", exc_info=True)
        print("error: something went wrong; run again with --verbose for the details", file=sys.stderr)
        return EXIT_FAILED


# -- commands ---------------------------------------------------------------------------------


def _models(args) -> int:
    from core.catalogue import Catalogue
    from core.settings import Settings

    catalogue = Catalogue.load(Settings.from_env().models_file)
    rows = [("ID", "TASKS", "ENGINE", "AVAILABLE")]
    for spec in catalogue:
        availability = spec.availability()
        rows.append(
            (spec.id, ",".join(spec.tasks), spec.engine, "yes" if availability.ready else f"no: {availability.detail}")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return EXIT_OK


def _generate(args) -> int:
    if (args.prompt is None) == (args.prompts is None):
        raise UsageError("give either a PROMPT or --prompts FILE")
    if args.prompts is None and args.seeds != 1:
        raise UsageError("--seeds goes with --prompts FILE (one prompt: use --seed and --num-images)")
    studio = _studio()
    request = GenerateRequest(**{**_request_values(args, GenerateRequest), "prompt": args.prompt or ""})
    if args.prompts is not None:
        return _prompt_batch(studio, args, request)
    result = _run(studio, request, label=None)
    for path, png in zip(_numbered(Path(args.output), len(result.pngs)), result.pngs, strict=True):
        _write(path, png)
    return EXIT_OK


def _prompt_batch(studio, args, template: GenerateRequest) -> int:
    """Every prompt of the file times --seeds, one PNG each in the output folder, plus manifest.csv."""
    from core.prompt_batch import expand, manifest_csv, read_prompts

    if args.num_images != 1:
        raise UsageError("--num-images goes with one PROMPT; with --prompts use --seeds N")
    rows = read_prompts(_read(args.prompts, "prompts"), name=Path(args.prompts).name)
    items = expand(rows, template, seeds=args.seeds)
    out_dir = Path(args.output)
    if out_dir.suffix.lower() == ".png":
        raise UsageError("with --prompts, -o names a folder")
    problems = {}
    for number, item in enumerate(items, 1):
        prefix = f"[{number}/{len(items)}] {item.name}"
        try:
            if item.problem is not None:
                raise UsageError(item.problem)
            result = _run(studio, item.request, label=prefix, quiet=True)
            item.png, item.parameters = result.pngs[0], result.parameters
            _write(out_dir / f"{item.name}.png", item.png, quiet=True)
            print(f"{prefix}: done{' (cache hit)' if result.cached else ''}", file=sys.stderr)
        except StudioError as error:
            problems[item.name] = error.message
            print(f"{prefix}: {error}", file=sys.stderr)
    _write(out_dir / "manifest.csv", manifest_csv(items, problems).encode(), quiet=True)
    done = len(items) - len(problems)
    print(f"{done} of {len(items)} images done; results and manifest.csv in {out_dir}", file=sys.stderr)
    return EXIT_OK if not problems else EXIT_BAD_INPUT


def _inpaint(args) -> int:
    from core.images import load_image
    from core.masks import mask_from_image

    studio = _studio()
    image = load_image(_read(args.image, "image"), studio.image_limits)
    mask = mask_from_image(_read(args.mask, "mask"), image.size, studio.image_limits)
    result = _run_inpaint(studio, args, image, mask, label=Path(args.image).name)
    _write(Path(args.output), result.pngs[0])
    return EXIT_OK


def _batch(args) -> int:
    from core.batch import mask_key, unique_names
    from core.images import load_image
    from core.masks import mask_from_image

    studio = _studio()
    images_dir, out_dir = Path(args.images), Path(args.output)
    if not images_dir.is_dir():
        raise UsageError(f"--images {args.images!r} is not a folder")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise UsageError(f"no images found in {args.images!r}")
    shared_mask_bytes = _read(args.mask, "mask") if args.mask else None
    masks_by_key: dict[str, list[Path]] = {}  # matched as the Batch page matches: photo.png, photo_mask.png
    if args.masks:
        masks_dir = Path(args.masks)
        if not masks_dir.is_dir():
            raise UsageError(f"--masks {args.masks!r} is not a folder")
        for path in sorted(masks_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                masks_by_key.setdefault(mask_key(path.name), []).append(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    # photo.jpg and photo.png both become results: photo.png and "photo (2).png", never one over the other
    names = unique_names([path.stem for path in images])
    for number, (image_path, name) in enumerate(zip(images, names, strict=True), 1):
        prefix = f"[{number}/{len(images)}] {image_path.name}"
        try:
            if shared_mask_bytes is not None:
                mask_bytes = shared_mask_bytes
            else:
                candidates = masks_by_key.get(image_path.stem, [])
                if len(candidates) != 1:
                    found = "no mask" if not candidates else f"{len(candidates)} masks"
                    raise UsageError(f"{found} named like {image_path.stem}; skipped")
                mask_bytes = candidates[0].read_bytes()
            image = load_image(image_path.read_bytes(), studio.image_limits)
            mask = mask_from_image(mask_bytes, image.size, studio.image_limits)
            result = _run_inpaint(studio, args, image, mask, label=prefix, quiet=True)
            _write(out_dir / f"{name}.png", result.pngs[0], quiet=True)
            renamed = f" -> {name}.png" if name != image_path.stem else ""  # another image had its name
            print(f"{prefix}: done{renamed}{' (cache hit)' if result.cached else ''}", file=sys.stderr)
        except StudioError as error:
            failures += 1
            print(f"{prefix}: {error}", file=sys.stderr)
    print(f"{len(images) - failures} of {len(images)} images done; results in {out_dir}", file=sys.stderr)
    return EXIT_OK if failures == 0 else EXIT_BAD_INPUT


def _outpaint(args) -> int:
    from core.images import load_image

    if args.aspect is None and not any(getattr(args, name) for name in ("left", "top", "right", "bottom")):
        raise UsageError("give --left/--right/--top/--bottom PX, or --aspect W:H")
    if args.anchor != "center" and args.aspect is None:
        raise UsageError("--anchor goes with --aspect")
    studio = _studio()
    image = load_image(_read(args.image, "image"), studio.image_limits)
    request = OutpaintRequest(**_request_values(args, OutpaintRequest), image=image)
    result = _run(studio, request, label=Path(args.image).name)
    _write(Path(args.output), result.pngs[0])
    return EXIT_OK


def _segment(args) -> int:
    from core.images import load_image
    from core.masks.files import mask_png
    from core.requests import SegmentRequest

    studio = _studio()
    image = load_image(_read(args.image, "image"), studio.image_limits)
    points = tuple((x, y, True) for x, y in args.point) + tuple((x, y, False) for x, y in args.exclude)
    model = args.model or studio.catalogue.default_segment_model()
    mask = studio.segment(SegmentRequest(model=model, image=image, points=points, box=args.box))
    _write(Path(args.output), mask_png(mask))
    return EXIT_OK


def _numbers(count: int, what: str):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(part) for part in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"{what} must be {count} numbers separated by commas, got {text!r}")
        return values

    return parse


def _info(args) -> int:
    from core.provenance import read_parameters

    print(json.dumps(read_parameters(_read(args.file, "file")), indent=2, sort_keys=True))
    return EXIT_OK


def _download(args) -> int:
    from core.catalogue import Catalogue
    from core.download import download_model
    from core.settings import Settings

    spec = Catalogue.load(Settings.from_env().models_file).get(args.model)
    print(f"{spec.name}: {download_model(spec)}", file=sys.stderr)
    return EXIT_OK


# -- helpers ----------------------------------------------------------------------------------


def _studio():
    from core.runner import Studio

    return Studio.from_settings()


def _run_inpaint(studio, args, image, mask, *, label: str, quiet: bool = False):
    request = InpaintRequest(**_request_values(args, InpaintRequest), image=image, mask=mask)
    return _run(studio, request, label=label, quiet=quiet)


def _run(studio, request, *, label: str | None, quiet: bool = False):
    """Prepare (a local pipeline folder is fine here), warn, run with a progress bar, report."""
    prepared = studio.prepare(request, allow_local_path=True)
    for warning in prepared.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    with _ProgressBar(label or prepared.spec.name, disable=quiet) as progress:
        result = studio.run(prepared, progress)
    if not quiet:
        _say_result(result)
    return result


def _say_result(result) -> None:
    if result.cached:
        print("cache hit: served from the result store", file=sys.stderr)
    if any(result.filtered):
        print("warning: the model's safety checker filtered some images", file=sys.stderr)
    print(f"seed: {result.seed}", file=sys.stderr)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} file {Path(path).name!r} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {Path(path).name!r} is a folder, not a file") from None
    except OSError as error:
        raise UsageError(f"cannot read {what} file {Path(path).name!r}: {error.strerror}") from None


def _write(path: Path, data: bytes, quiet: bool = False) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as error:
        raise UsageError(f"cannot write {path.name!r}: {error.strerror}") from None
    if not quiet:
        print(f"wrote {path}", file=sys.stderr)


def _numbered(path: Path, count: int) -> list[Path]:
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{number}{path.suffix or '.png'}") for number in range(1, count + 1)]


class _ProgressBar:
    """A tqdm bar on stderr fed by the engine's step reports."""

    def __init__(self, label: str, disable: bool = False):
        self.label = label
        self.disable = disable
        self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def __call__(self, step: int, total: int, preview=None) -> None:
        if self.disable:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="step", file=sys.stderr, leave=False)
        self.bar.update(step - self.bar.n)


def _request_args(parser: argparse.ArgumentParser, request_type: type, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per request field, from the schema (`core.requests`): its type, choices, default and meaning.
    The request checks the values; argparse only converts them."""
    parser.add_argument(
        "--model", required=True, help="catalogue id (python -m core models) or a local diffusers folder"
    )
    for name, info in fields(request_type).items():
        if name in ("model", "image", "mask", *skip):
            continue
        flag = next(
            (item.flag for item in annotations_of(info) if isinstance(item, Cli)), "--" + name.replace("_", "-")
        )
        kinds = leaf_types(info.annotation)
        text = (info.description or "").rstrip(".")
        if bool in kinds:
            parser.add_argument(flag, dest=name, action="store_true", help=text)
            continue
        choices = [kind for kind in kinds if isinstance(kind, str)] or None
        convert = None if choices else int if int in kinds else float if float in kinds else str
        shown = f" (default: {info.default})" if info.default not in (None, "") else ""
        metavar = None if choices else flag.lstrip("-").upper().replace("-", "_")
        parser.add_argument(
            flag, dest=name, type=convert, choices=choices, default=info.default, metavar=metavar, help=text + shown
        )


def _request_values(args: argparse.Namespace, request_type: type) -> dict[str, Any]:
    """The request fields given on the command line (every field `_request_args` made a flag for)."""
    values = vars(args)
    return {name: values[name] for name in fields(request_type) if name in values and name not in ("image", "mask")}


def _worker(args) -> int:
    """Run jobs from the job store until stopped (Ctrl-C or SIGTERM put the running job back in the queue)."""
    import signal

    from core import services
    from core.jobs import Worker, worker_name

    queue = services.queue(workers=0)  # this process's only worker is the one below, in the main thread
    worker = Worker(queue, worker_name())
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: worker.stop())
    print(f"worker {worker.name}: taking jobs from {queue.store!r}", file=sys.stderr, flush=True)
    worker.run()
    return EXIT_OK


def _queue(args) -> int:
    """The jobs waiting and running (and the latest finished ones with --recent N), and the workers alive."""
    from core import services

    queue = services.queue(workers=0)
    unfinished = sorted(queue.unfinished(), key=lambda status: (status.position == 0, status.position))
    rows = [("ID", "STATE", "POSITION", "WORKER", "ATTEMPTS", "AGE", "JOB")]
    for status in [*unfinished, *queue.recent(args.recent)]:
        state = "cancelling" if status.cancel_requested and not status.state.finished else status.state.value
        rows.append((
            status.id, state, str(status.position or "-"), status.worker or "-", str(status.attempts),
            _age(status.age_s), f"{status.label or status.model} ({status.model})",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    workers = queue.live_workers()
    waiting = sum(1 for status in unfinished if status.state.value == "queued")
    print(
        f"\n{queue.store!r}: {waiting} waiting, {len(workers)} workers alive ({', '.join(sorted(workers)) or 'none'})"
    )
    return EXIT_OK


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, as for every other bad input
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Canvas Studio from the command line.")
    parser.add_argument("--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)

    sub = commands.add_parser("models", help="list the models and whether they can run now")
    sub.set_defaults(command=_models)

    sub = commands.add_parser("generate", help="text to image (one prompt, or a file of prompts)")
    sub.add_argument("prompt", nargs="?")
    sub.add_argument("--prompts", metavar="FILE", help="a .txt (one prompt a line) or .csv of prompts; -o is a folder")
    sub.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="with --prompts: images per prompt (seed, seed+1, …)")
    sub.add_argument(
        "-o", "--output", required=True, help="output PNG (OUT-1.png … with --num-images > 1), or folder with --prompts"
    )
    _request_args(sub, GenerateRequest, skip=("prompt",))
    sub.set_defaults(command=_generate)

    sub = commands.add_parser("inpaint", help="repaint the masked area of an image")
    sub.add_argument("image")
    sub.add_argument("mask", help="white (or painted on transparent) = repaint")
    sub.add_argument("-o", "--output", required=True)
    _request_args(sub, InpaintRequest)
    sub.set_defaults(command=_inpaint)

    sub = commands.add_parser("batch", help="inpaint every image in a folder")
    sub.add_argument("--images", required=True, help="folder of images")
    masks = sub.add_mutually_exclusive_group(required=True)
    masks.add_argument("--masks", help="folder of masks matched to images by file name (stem)")
    masks.add_argument("--mask", help="one mask for every image")
    sub.add_argument("-o", "--output", required=True, help="output folder")
    _request_args(sub, InpaintRequest)
    sub.set_defaults(command=_batch)

    sub = commands.add_parser("outpaint", help="extend the canvas on any side, or to an aspect ratio")
    sub.add_argument("image")
    sub.add_argument("-o", "--output", required=True)
    _request_args(sub, OutpaintRequest)
    sub.set_defaults(command=_outpaint)

    sub = commands.add_parser("segment", help="a mask of the object under clicked points and/or in a box")
    sub.add_argument("image")
    sub.add_argument("-o", "--output", required=True, help="the mask PNG (white = selected)")
    sub.add_argument(
        "--point",
        type=_numbers(2, "--point"),
        action="append",
        default=[],
        metavar="X,Y",
        help="on the object (repeat)",
    )
    sub.add_argument(
        "--exclude",
        type=_numbers(2, "--exclude"),
        action="append",
        default=[],
        metavar="X,Y",
        help="not part of it (repeat)",
    )
    sub.add_argument("--box", type=_numbers(4, "--box"), metavar="L,T,R,B", help="around the object, photo pixels")
    sub.add_argument("--model", help="segmentation model id (default: the catalogue's first)")
    sub.set_defaults(command=_segment)

    sub = commands.add_parser("info", help="print the parameters stored in a result PNG")
    sub.add_argument("file")
    sub.set_defaults(command=_info)

    sub = commands.add_parser("download", help="fetch a hub model into the Hugging Face cache")
    sub.add_argument("model")
    sub.set_defaults(command=_download)

    sub = commands.add_parser("worker", help="run jobs from the job store (STUDIO_QUEUE_URL) until stopped")
    sub.set_defaults(command=_worker)

    sub = commands.add_parser("queue", help="list the jobs waiting and running, and the workers alive")
    sub.add_argument("--recent", type=int, default=10, help="also list this many finished jobs (default 10)")
    sub.set_defaults(command=_queue)
    return parser
