"""Which torch device and dtype to run on, and giving memory back after a model is dropped."""

from __future__ import annotations

import ctypes
import gc
import os
import shutil
import sys
from typing import TYPE_CHECKING

from core.errors import BadParameterError

if TYPE_CHECKING:
    import torch

DEVICE_KINDS = ("cuda", "mps", "cpu")


def _usable(device: str) -> bool:
    import torch

    kind, _, index = device.partition(":")
    if kind == "cpu":
        return index == ""
    if kind == "cuda":
        if not torch.cuda.is_available():
            return False
        return index == "" or (index.isdigit() and int(index) < torch.cuda.device_count())
    if kind == "mps":
        return index == "" and torch.backends.mps.is_available()
    return False


def pick_device(preferred: str | None = None) -> str:
    """The device to run models on: `preferred` (e.g. STUDIO_DEVICE) if this machine has it,
    otherwise the best available one, cuda > mps > cpu."""
    if preferred is not None and preferred.strip():
        device = preferred.strip().lower()
        if device.partition(":")[0] not in DEVICE_KINDS:
            raise BadParameterError(f"device must be one of {', '.join(DEVICE_KINDS)} (cuda may name a GPU: cuda:1), got {preferred!r}")
        if not _usable(device):
            raise BadParameterError(f"device {device!r} is not available on this machine; use {pick_device()!r} or leave it unset")
        return device
    return next(kind for kind in DEVICE_KINDS if _usable(kind))


def pick_dtype(device: str) -> torch.dtype:
    """Half precision on GPUs (half the memory, much faster), full precision on CPUs (where
    float16 is slow and some kernels are missing)."""
    import torch

    return torch.float16 if device.partition(":")[0] in ("cuda", "mps") else torch.float32


def active_device(preferred: str | None = None) -> str:
    """`pick_device`, answered without importing torch (~1.5 s) on machines with no GPU driver,
    for cheap status lines (the home page, the API's health)."""
    if (preferred or "cpu").strip().lower() == "cpu" and not _gpu_driver_present():
        return "cpu"
    return pick_device(preferred)


def runs_on_cpu(preferred: str | None = None) -> bool:
    """Whether local models run on the CPU here; answered without importing torch when no GPU
    driver exists (the catalogue asks this while listing models)."""
    choice = (preferred or "").strip().lower()
    if choice:
        return choice == "cpu"
    return not _gpu_driver_present() or pick_device() == "cpu"


def device_summary(preferred: str | None = None) -> str:
    """One line for people, e.g. "CPU (2 cores)" or "CUDA: NVIDIA GeForce RTX 3060"."""
    device = active_device(preferred)
    kind = device.partition(":")[0]
    if kind == "cuda":
        import torch

        return f"CUDA: {torch.cuda.get_device_name(torch.device(device))}"
    if kind == "mps":
        return "Apple GPU (MPS)"
    return _cpu_summary()


def _gpu_driver_present() -> bool:
    """Whether torch could find a GPU here at all: an NVIDIA or ROCm driver, or a Mac (MPS)."""
    if sys.platform == "darwin":
        return True
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/kfd") or shutil.which("nvidia-smi") is not None


def _cpu_summary() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return f"CPU ({cores} core{'s' if cores != 1 else ''})"


def release_memory(device: str) -> None:
    """After dropping a model's last reference: collect it and hand the freed memory back, so a
    resident-models limit means what it says (the process's RSS / GPU memory really drops)."""
    gc.collect()
    kind = device.partition(":")[0]
    if kind in ("cuda", "mps"):
        import torch
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()
    _trim_malloc_heap()


def _trim_malloc_heap() -> None:
    # glibc keeps freed blocks in its heap; malloc_trim returns them to the OS. Other C
    # libraries (musl, macOS, Windows) either do this already or lack the call.
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
