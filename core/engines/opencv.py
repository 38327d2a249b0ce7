"""OpenCV's classical inpainting (Telea, Navier-Stokes): offline, no weights, fast on CPU."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from core.catalogue import ModelSpec
from core.engines.base import Generated, Reporter
from core.errors import BadParameterError
from core.requests import GenerateRequest, InpaintRequest

_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


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
        report(0, 1)
        filled = cv2.inpaint(np.asarray(image), np.asarray(mask), self._radius, self._method)
        report(1, 1)
        return Generated([Image.fromarray(filled)])

    def close(self) -> None:
        """Nothing held."""
