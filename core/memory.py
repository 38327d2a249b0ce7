"""Will a model fit in the memory this process may use? Answered before loading, never by dying.

Community Cloud gives an app ~2.7 GB; a real-size SD-Turbo peaks at ~6.3 GB on a CPU. Loading it
there gets the process killed by the kernel, taking every user's session with it. So each local
model's need is known before it loads, and compared with this host's budget:

- **need**: `memory_mb` in the catalogue when declared (the peak RSS of one run, measured in
  `bench/`); otherwise estimated from the weight files it would load (their size x 1.1, plus
  the run's working memory). Hosted and OpenCV models need nothing worth counting.
- **budget**: `STUDIO_MEMORY_LIMIT_MB` when set; else the tightest limit the kernel enforces on
  this process: its cgroup's (v2 `memory.max`, or v1 `memory.limit_in_bytes`, as containers and
  Community Cloud set) or its address-space limit (`ulimit -v`, RLIMIT_AS); else the RAM the
  machine has available plus what this process already holds.

On a GPU, weights live in GPU memory, which this module does not measure: the check applies to
models run on the CPU only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.settings import ENV_PREFIX, Settings

MIB = 1024 * 1024
GIB = 1024 * MIB
LIMIT_ENV = ENV_PREFIX + "MEMORY_LIMIT_MB"  # named where a refusal says where its figure came from
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63
_WEIGHT_SUFFIXES = (".safetensors", ".onnx")


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str  # for people: where the figure comes from

    def refusal(self, need: int) -> str | None:
        """The one-line refusal when `need` does not fit, else None."""
        if need <= self.bytes:
            return None
        return f"needs ~{gigabytes(need)} GB, this host has {gigabytes(self.bytes)} GB ({self.source})"


def gigabytes(count: int) -> str:
    return f"{count / 1e9:.1f}"


def budget(environ: Mapping[str, str] | None = None) -> Budget:
    """The memory models may use: `STUDIO_MEMORY_LIMIT_MB` from `environ` (default: the process's)."""
    limit_mb = Settings.from_env(environ).memory_limit_mb
    if limit_mb is not None:
        return Budget(limit_mb * MIB, LIMIT_ENV)
    limits = [limit for limit in (cgroup_limit(), address_space_limit()) if limit is not None]
    if limits:
        return Budget(min(limits), "its memory limit")
    import psutil

    held = psutil.Process().memory_info().rss
    return Budget(psutil.virtual_memory().available + held, "RAM available")


def address_space_limit() -> int | None:
    """RLIMIT_AS (`ulimit -v`, `prlimit --as`), or None when unlimited."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def cgroup_limit(membership: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The tightest memory limit of this process's cgroup (and its ancestors), or None."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    limits: list[int] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            limits += _limits(root, path, "memory.max")
        elif "memory" in controllers.split(","):
            limits += _limits(root / "memory", path, "memory.limit_in_bytes")
    found = [limit for limit in limits if limit < _UNLIMITED]
    return min(found) if found else None


def _limits(root: Path, path: str, name: str) -> Iterable[int]:
    """The limit file in `path` and in each ancestor up to `root` (a container often sees only its own)."""
    folder = root / path.lstrip("/")
    while True:
        try:
            text = (folder / name).read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            yield int(text)
        if folder == root or root not in folder.parents:
            return
        folder = folder.parent


def estimated_need(working_bytes: int, weight_files: Iterable[Path]) -> int:
    """Peak memory of one run of a model whose weights are these files, plus the working memory its
    engine kind declares (activations, the decoded image, Python and the libraries)."""
    weights = 0
    for path in weight_files:
        try:
            weights += path.stat().st_size  # follows the Hub cache's symlinks to the blobs
        except OSError:
            continue
    return int(weights * 1.1) + working_bytes


def weight_files(folder: Path, *, variant: str | None = None) -> list[Path]:
    """The weight files a diffusers pipeline folder would load: one format, one variant (or none)."""
    found = [path for path in folder.rglob("*") if path.name.endswith(_WEIGHT_SUFFIXES)]

    def of_variant(path: Path) -> bool:
        parts = path.name.split(".")
        return variant is not None and (variant in parts[1:-1] or any(part.startswith(f"{variant}-") for part in parts))

    variants = [path for path in found if of_variant(path)]
    if variants:
        return variants
    plain = [path for path in found if not any(part in ("fp16", "bf16") for part in path.name.split(".")[1:-1])]
    return plain or found


__all__ = [
    "Budget",
    "LIMIT_ENV",
    "address_space_limit",
    "budget",
    "cgroup_limit",
    "estimated_need",
    "gigabytes",
    "weight_files",
]
