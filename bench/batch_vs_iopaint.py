"""`python -m core batch` ÷ `iopaint run --model cv2` on the same folders of real photos with masks (target <= 1.0).

IOPaint 1.6.0 is installed from PyPI into its own virtual environment, bench/.venv-iopaint, the
first time this runs (torch pinned to this machine's CPU wheel, see bench/iopaint-constraints.txt).
Its `cv2` model is OpenCV's Navier-Stokes inpainting with radius 4 (read from its source and
checked below), so ours runs the same: a catalogue entry `opencv-ns-r4` (Navier-Stokes, radius 4).
Both crop around each masked area on large images (IOPaint: margin 128 px above 800 px; ours:
padding 32 px) and write one PNG per photo; ours also stores every result in its (fresh, empty)
result store and embeds the parameters.

Both commands run in fresh processes, alternating which goes first; the wall time includes each
one's start-up. A second figure removes start-up: (time for N photos - time for 1 photo) of ours
÷ the same of IOPaint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.figures import Figure, Outcome, Target
from bench.measure import SideBySide, Spread, Timing, children_cpu
from bench.photos import PhotoFolders, write_photo_folders
from bench.workspace import IOPAINT_LIKE_MODEL, REPOSITORY, Workspace

NAME = "batch_vs_iopaint"
TARGET = 1.0
PHOTOS = 24
LONG_SIDE = 1536
IOPAINT_VERSION = "1.6.0"
TORCH_VERSION = "2.13.0"  # this machine's CPU wheel; anything else would pull CUDA builds
VENV = REPOSITORY / "bench" / ".venv-iopaint"
CONSTRAINTS = REPOSITORY / "bench" / "iopaint-constraints.txt"


def run(workspace: Workspace) -> Outcome:
    setup = ensure_iopaint()
    print(setup["said"], flush=True)
    folders = write_photo_folders(workspace.scratch("batch-photos"), PHOTOS, LONG_SIDE)
    single = _single_photo_folders(workspace, folders)
    repeats = workspace.repeats(3, quick=2)
    full_ours, full_theirs, one_ours, one_theirs = [], [], [], []
    for repeat in range(repeats):
        order = [("ours", folders), ("theirs", folders), ("ours", single), ("theirs", single)]
        if repeat % 2:
            order = [order[1], order[0], order[3], order[2]]
        for tool, photos in order:
            timing = _run_tool(tool, photos, workspace, f"{repeat}-{tool}-{photos.count}")
            runs = {("ours", PHOTOS): full_ours, ("theirs", PHOTOS): full_theirs, ("ours", 1): one_ours, ("theirs", 1): one_theirs}
            runs[(tool, photos.count)].append(timing)
    whole = SideBySide(tuple(full_ours), tuple(full_theirs))
    per_photo = [
        (ours.wall - ours_one.wall) / (theirs.wall - theirs_one.wall)
        for ours, theirs, ours_one, theirs_one in zip(full_ours, full_theirs, one_ours, one_theirs, strict=True)
    ]
    difference = _masked_difference(folders, workspace.root / f"batch-out-0-ours-{PHOTOS}", workspace.root / f"batch-out-0-theirs-{PHOTOS}")
    case = f"{PHOTOS} photos, long side {LONG_SIDE} px, OpenCV NS r4"
    figures = [
        Figure(
            figure="core batch / iopaint run",
            case=case,
            value=Spread.of(whole.ratios),
            unit="x",
            target=Target.at_most(TARGET),
            details={**whole.details("core_batch", "iopaint_run"), "outputs_compared": difference},
        ),
        Figure(
            figure="core batch / iopaint run, per photo after start-up",
            case=case,
            value=Spread.of(per_photo),
            unit="x",
            target=Target.report(),
            details={
                "core_batch_one_photo_s": Spread.of([timing.wall for timing in one_ours]).as_json(),
                "iopaint_run_one_photo_s": Spread.of([timing.wall for timing in one_theirs]).as_json(),
            },
        ),
    ]
    notes = {"what": __doc__.strip().splitlines()[0], "iopaint": setup, "photo_sizes": [list(size) for size in folders.sizes]}
    return Outcome(figures, notes)


# -- IOPaint's own venv -------------------------------------------------------------------------


def ensure_iopaint() -> dict:
    """IOPaint in bench/.venv-iopaint (installed from PyPI on first use), and the settings of its cv2 model."""
    python = VENV / "bin" / "python"
    installed_now = False
    if not _iopaint_installed(python):
        print(f"installing IOPaint {IOPAINT_VERSION} from PyPI into its own venv ({VENV.relative_to(REPOSITORY)}); a few minutes…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        # torch first, pinned: this machine's pip configuration has a local CPU wheel of exactly this version.
        subprocess.run([*pip, f"torch=={TORCH_VERSION}"], check=True)
        subprocess.run([*pip, "-c", str(CONSTRAINTS), f"iopaint=={IOPAINT_VERSION}"], check=True)
        installed_now = True
    probe = (
        "import json, importlib.metadata as m; from iopaint.schema import InpaintRequest as R; r = R(); "
        "print(json.dumps({'iopaint': m.version('iopaint'), 'torch': m.version('torch'), "
        "'opencv': m.version('opencv-python'), 'cv2_flag': str(r.cv2_flag.value), 'cv2_radius': r.cv2_radius, "
        "'hd_strategy': str(r.hd_strategy.value), 'crop_trigger_size': r.hd_strategy_crop_trigger_size, "
        "'crop_margin': r.hd_strategy_crop_margin}))"
    )
    found = json.loads(subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True).stdout)
    if found["cv2_flag"] != "INPAINT_NS" or found["cv2_radius"] != 4:
        raise RuntimeError(f"IOPaint's cv2 model is not Navier-Stokes radius 4 any more ({found}); update {IOPAINT_LIKE_MODEL}")
    said = (
        f"IOPaint {found['iopaint']} {'was just installed' if installed_now else 'is installed'} from PyPI into its own "
        f"venv ({VENV.relative_to(REPOSITORY)}, torch {found['torch']}); its cv2 model: "
        f"{found['cv2_flag']} radius {found['cv2_radius']}, {found['hd_strategy']} strategy above {found['crop_trigger_size']} px"
    )
    return {**found, "installed_from": "PyPI", "venv": str(VENV.relative_to(REPOSITORY)), "said": said}


def _iopaint_installed(python: Path) -> bool:
    if not python.exists():
        return False
    check = subprocess.run([str(python), "-c", "import iopaint"], capture_output=True)
    return check.returncode == 0


# -- running both tools -------------------------------------------------------------------------


def _single_photo_folders(workspace: Workspace, folders: PhotoFolders) -> PhotoFolders:
    root = workspace.scratch("batch-one-photo")
    first_image = sorted(folders.images.iterdir())[0]
    first_mask = folders.masks / f"{first_image.stem}.png"
    (root / "images").mkdir(exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    (root / "images" / first_image.name).write_bytes(first_image.read_bytes())
    (root / "masks" / first_mask.name).write_bytes(first_mask.read_bytes())
    return PhotoFolders(root / "images", root / "masks", 1, folders.sizes[:1])


def _run_tool(tool: str, photos: PhotoFolders, workspace: Workspace, label: str) -> Timing:
    output = workspace.root / f"batch-out-{label}"
    if tool == "ours":
        command = [sys.executable, "-m", "core", "batch", "--images", str(photos.images), "--masks", str(photos.masks)]
        command += ["-o", str(output), "--model", IOPAINT_LIKE_MODEL, "--seed", "1"]
        environment = workspace.environment(
            STUDIO_CACHE_DIR=str(workspace.scratch(f"batch-cache-{label}")),  # empty: every photo is a miss
            STUDIO_MODELS_FILE=str(workspace.opencv_catalogue_file),
        )
    else:
        command = [str(VENV / "bin" / "iopaint"), "run", "--model", "cv2", "--device", "cpu"]
        command += ["--image", str(photos.images), "--mask", str(photos.masks), "--output", str(output)]
        environment = workspace.environment()
    cpu_before, started = children_cpu(), time.perf_counter()
    completed = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True)
    timing = Timing(time.perf_counter() - started, children_cpu() - cpu_before)
    written = len(list(output.glob("*.png"))) if output.is_dir() else 0
    if completed.returncode != 0 or written != photos.count:
        raise RuntimeError(f"{tool} wrote {written} of {photos.count} results (status {completed.returncode}): {completed.stderr.strip()[-600:]}")
    return timing


def _masked_difference(folders: PhotoFolders, ours: Path, theirs: Path) -> dict:
    """How alike the two tools' results are: mean absolute difference (0-255) inside and outside the masks."""
    import numpy as np
    from PIL import Image

    inside, outside = [], []
    for image_file in sorted(folders.images.iterdir()):
        mask = np.asarray(Image.open(folders.masks / f"{image_file.stem}.png").convert("L")) >= 128
        ours_pixels = np.asarray(Image.open(ours / f"{image_file.stem}.png").convert("RGB"), dtype=np.int16)
        theirs_pixels = np.asarray(Image.open(theirs / f"{image_file.stem}.png").convert("RGB"), dtype=np.int16)
        difference = np.abs(ours_pixels - theirs_pixels).mean(axis=2)
        inside.append(float(difference[mask].mean()))
        outside.append(float(difference[~mask].mean()))
    return {
        "mean_abs_difference_inside_masks": float(np.mean(inside)),
        "mean_abs_difference_outside_masks": float(np.mean(outside)),
    }
