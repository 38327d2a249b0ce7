"""OpenCV's classical inpainting (Telea, Navier-Stokes): offline, no weights, fast on CPU.

`cv2.inpaint` is one C call that cannot be interrupted, and its cost grows with the masked area
times the radius squared: an 8000x6000 photo with every other row masked runs for minutes. So
1. the cost is estimated before anything runs, and work estimated over the operator's limit
   (`STUDIO_MAX_OPENCV_SECONDS`) is refused with the reason;
2. work estimated under `IN_PROCESS_S` runs here; longer work runs in a child process (the same
   call, so the same pixels) that a cancel kills within a poll interval.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core.catalogue import ModelSpec
from core.engines.base import Generated, Reporter
from core.errors import BadParameterError, EngineError
from core.requests import GenerateRequest, InpaintRequest
from core.settings import Settings

log = logging.getLogger(__name__)

_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
MAX_SECONDS_ENV = "STUDIO_MAX_OPENCV_SECONDS"
IN_PROCESS_S = 0.5  # estimated work below this runs in this process: a child costs ~0.3 s to start
_POLL_S = 0.1  # how often a child's run checks for a cancel
# Measured on a 2-core CPU (bench/hostile.py): about 1 us per masked pixel plus 0.45 us per pixel of
# the radius' square, for both methods (Navier-Stokes is a little cheaper; the estimate errs high).
_US_PER_PIXEL, _US_PER_PIXEL_RADIUS2 = 1.0, 0.45
_CHILD = Path(__file__).with_name("opencv_child.py")  # run by path: it imports cv2 and numpy only


def estimated_seconds(masked_pixels: int, radius: int) -> float:
    return masked_pixels * (_US_PER_PIXEL + _US_PER_PIXEL_RADIUS2 * radius * radius) / 1e6


def max_seconds() -> float:
    """The operator's limit on one run's estimated cost; 0 means no limit."""
    return Settings.from_env().max_opencv_seconds


class OpenCVEngine:
    def __init__(self, spec: ModelSpec):
        method = spec.options.get("method", "telea")
        if method not in _METHODS:
            raise BadParameterError(f"{spec.id}: options.method must be one of {sorted(_METHODS)}, got {method!r}")
        radius = spec.options.get("radius", 5)
        if not isinstance(radius, int) or not 1 <= radius <= 64:
            raise BadParameterError(f"{spec.id}: options.radius must be a whole number from 1 to 64, got {radius!r}")
        self.spec = spec
        self._method = _METHODS[method]
        self._radius = radius

    def text_to_image(self, request: GenerateRequest, report: Reporter) -> Generated:
        raise BadParameterError(f"{self.spec.name} cannot generate images from text")

    def inpaint(self, image: Image.Image, mask: Image.Image, request: InpaintRequest, report: Reporter) -> Generated:
        pixels, hard = np.asarray(image), np.asarray(mask)
        estimate = estimated_seconds(int(np.count_nonzero(hard)), self._radius)
        limit = max_seconds()
        if limit and estimate > limit:
            raise BadParameterError(
                f"{self.spec.name} would take about {estimate:.0f} s on this region "
                f"({np.count_nonzero(hard) / 1e6:.1f} MP masked), over this server's limit of {limit:g} s "
                f"({MAX_SECONDS_ENV}); mask a smaller region or use a smaller image"
            )
        report(0, 1)
        if estimate < IN_PROCESS_S:
            filled = cv2.inpaint(pixels, hard, self._radius, self._method)
        else:
            filled = _inpaint_in_child(pixels, hard, self._radius, self._method, report)
        report(1, 1)
        return Generated([Image.fromarray(filled)])

    def close(self) -> None:
        """Nothing held."""


def _inpaint_in_child(pixels: np.ndarray, mask: np.ndarray, radius: int, method: int, report: Reporter) -> np.ndarray:
    """`cv2.inpaint` in a child process; `report` (which raises on a cancel) is called every `_POLL_S`."""
    height, width, channels = pixels.shape
    header = json.dumps({"height": height, "width": width, "channels": channels, "radius": radius, "method": method})
    child = subprocess.Popen(
        [sys.executable, "-I", str(_CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out: list[bytes] = []

    def feed() -> None:
        try:
            child.stdin.write(header.encode() + b"\n")
            child.stdin.write(np.ascontiguousarray(pixels).data)
            child.stdin.write(np.ascontiguousarray(mask).data)
            child.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the child died or was killed: its exit status says why, below

    # Feeding 200 MB into a pipe takes a moment too: both directions run in threads while this one polls.
    threads = [
        threading.Thread(target=feed, daemon=True),
        threading.Thread(target=lambda: out.append(child.stdout.read()), daemon=True),
    ]
    try:
        for thread in threads:
            thread.start()
        while threads[1].is_alive():
            threads[1].join(_POLL_S)
            report(0, 1)  # raises CancelledError: the finally kills the child
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for thread in threads:
            thread.join()
        errors = child.stderr.read().decode("utf-8", "replace") if child.stderr else ""
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    expected = height * width * channels
    if child.returncode != 0 or len(out[0]) != expected:
        log.error("the OpenCV child process failed (exit %s): %s", child.returncode, errors[-2000:])
        raise EngineError("OpenCV failed while running; the details are in the server log")
    return np.frombuffer(out[0], np.uint8).reshape(height, width, channels)
