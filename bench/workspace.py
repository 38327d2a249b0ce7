"""One benchmark run's settings and scratch folder, and the tiny offline pipelines built on first use.

The pipelines are the test suite's (tests/tiny_pipelines.py: VAE scale 8 like real SD), registered
in a catalogue at a 512-px working resolution, so latents and crops have real SD sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
WORKING_RESOLUTION = 512

# Matches IOPaint's `cv2` model (Navier-Stokes, radius 4, read from its source), for a like-with-like
# comparison; the built-in opencv-ns uses radius 5.
IOPAINT_LIKE_MODEL = "opencv-ns-r4"
_IOPAINT_LIKE_ENTRY = f"""
[models.{IOPAINT_LIKE_MODEL}]
name = "OpenCV Navier-Stokes, radius 4 (as IOPaint's cv2)"
tasks = ["inpaint"]
engine = "opencv"
working_resolution = 0
size_multiple = 1
default_steps = 1
default_guidance = 0.0
licence = "Apache-2.0 (OpenCV)"
options = {{ method = "ns", radius = 4 }}
"""


@dataclass(frozen=True)
class Options:
    quick: bool = False
    repeats: int | None = None  # None: each benchmark's own default (fewer with quick)
    threads: int = 1  # torch threads in every benchmark process; 0 = torch's choice
    results: Path = RESULTS
    tiny_pipelines: Path | None = None  # reuse pipelines built by tests/tiny_pipelines.py


class Workspace:
    def __init__(self, root: Path, options: Options):
        self.root = Path(root)
        self.options = options

    def repeats(self, full: int, quick: int = 3) -> int:
        if self.options.repeats is not None:
            return self.options.repeats
        return quick if self.options.quick else full

    def scratch(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @cached_property
    def tiny_pipelines(self) -> dict[str, Path]:
        """{"txt2img": folder, "inpaint": folder}, built once per run (10-20 s) unless given."""
        given = self.options.tiny_pipelines
        if given is not None:  # checked by the command line
            return {"txt2img": Path(given) / "tiny-sd", "inpaint": Path(given) / "tiny-sd-inpaint"}
        from tests.tiny_pipelines import build_tiny_pipelines

        print("building the tiny offline pipelines…", flush=True)
        return build_tiny_pipelines(self.scratch("tiny-pipelines"))

    @cached_property
    def catalogue_file(self) -> Path:
        """The tiny pipelines (tiny-sd, tiny-sd-inpaint) at 512 px, plus the IOPaint-like OpenCV model."""
        from tests.tiny_pipelines import write_catalogue

        path = write_catalogue(self.root / "models.toml", self.tiny_pipelines, working_resolution=WORKING_RESOLUTION)
        with open(path, "a", encoding="utf-8") as catalogue:
            catalogue.write(_IOPAINT_LIKE_ENTRY)
        return path

    @cached_property
    def opencv_catalogue_file(self) -> Path:
        """Only the IOPaint-like OpenCV model: for benchmarks that need no pipeline."""
        path = self.root / "opencv-models.toml"
        path.write_text(_IOPAINT_LIKE_ENTRY, encoding="utf-8")
        return path

    def catalogue(self):
        from core.catalogue import Catalogue

        return Catalogue.load(self.catalogue_file)

    def stored_studio(self, name: str):
        """A Studio over the workspace catalogue with a result store of its own (`name`), and a job queue
        in front of it: what the pages and the API run on."""
        from core.jobs import JobQueue
        from core.pool import ModelPool
        from core.runner import Studio
        from core.store import ResultStore

        studio = Studio(self.catalogue(), ModelPool(2), ResultStore(self.scratch(name), 64 << 30))
        return studio, JobQueue(studio, max_queue=4, max_per_session=4)

    def environment(self, **extra: str) -> dict[str, str]:
        """The environment of a child process: this repository importable, offline, torch threads set."""
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
        environment["HF_HUB_OFFLINE"] = "1"
        environment.update(extra)
        return environment


def child_report(module: str, arguments: list[str], environment: dict[str, str], timeout: float = 900) -> dict:
    """Run `python -m <module> <arguments>` in a fresh process; its last stdout line is a JSON report,
    to which the process's wall time (start-up included) is added as "process_wall_s"."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{module} {' '.join(arguments)} failed with status {completed.returncode}:\n{tail}")
    elapsed = time.perf_counter() - started
    lines = completed.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{module} printed no report")
    return {**json.loads(lines[-1]), "process_wall_s": elapsed}


def set_torch_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
