"""A local stand-in for a Hugging Face Inference Endpoint, on 127.0.0.1 only.

It speaks what `huggingface_hub.InferenceClient` (2.4) sends to an endpoint URL:
- text-to-image: POST <url>, JSON {"inputs": prompt, "parameters": {width, height, seed, ...}},
  headers `authorization: Bearer <token>` and `accept: image/png`; the reply is the image's bytes.
- image-to-image: POST <url>, JSON {"inputs": base64 image, "parameters": {prompt, target_size, ...}}
  (raw image bytes with an image content type when there are no parameters); the reply likewise.

Valid requests get real PNGs: text-to-image a gradient whose colours come from the prompt and the
seed; image-to-image the input blended with the prompt's colour. The first path segment picks a
failure: /unauthorized 401, /forbidden 403, /missing 404, /busy 429 (Retry-After: 7), /loading 503,
/busy-later (429, Retry-After as an HTTP date 30 s ahead), /slow (answers after `slow_s`), /html and
/json (200 with no image), /truncated (half a PNG).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

MAX_BODY_BYTES = 32 * 1024 * 1024


def prompt_colours(prompt: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    digest = hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()
    return np.frombuffer(digest[:3], np.uint8).astype(np.float32), np.frombuffer(digest[3:6], np.uint8).astype(np.float32)


def gradient_png(prompt: str, seed: int, width: int, height: int) -> bytes:
    """Left-to-right from one colour to another, both from the prompt and seed."""
    start, end = prompt_colours(prompt, seed)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    row = start * (1 - ramp) + end * ramp
    pixels = np.repeat(row, height, axis=0).round().astype(np.uint8)
    return _png(Image.fromarray(pixels, "RGB"))


def repainted_png(image: Image.Image, prompt: str, size: tuple[int, int]) -> bytes:
    """The input, resized to `size`, half-blended with the prompt's first colour."""
    colour, _ = prompt_colours(prompt, 0)
    pixels = np.asarray(image.convert("RGB").resize(size), dtype=np.float32)
    return _png(Image.fromarray((pixels * 0.5 + colour * 0.5).round().astype(np.uint8), "RGB"))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    task: str  # "text-to-image" or "image-to-image"
    inputs: Any  # the prompt, or the decoded input image
    parameters: dict[str, Any]


@dataclass
class FakeInferenceServer:
    token: str
    slow_s: float = 3.0
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, scenario: str = "ok") -> str:
        return f"http://127.0.0.1:{self.port}/{scenario}"

    def start(self) -> FakeInferenceServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # ends any /slow sleep at once
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def wait_slow(self) -> None:
        self._stop.wait(self.slow_s)


_FAILURES = {
    "unauthorized": (401, {}, b'{"error": "Invalid credentials in Authorization header"}'),
    "forbidden": (403, {}, b'{"error": "This token may not call this endpoint"}'),
    "missing": (404, {}, b'{"error": "Model not found"}'),
    "busy": (429, {"Retry-After": "7"}, b'{"error": "Rate limit reached"}'),
    "loading": (503, {}, b'{"error": "Model is currently loading", "estimated_time": 20.0}'),
}


def _handler_for(server: FakeInferenceServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if not 0 <= length <= MAX_BODY_BYTES:
                return self._reply(413, "application/json", b'{"error": "too large"}')
            body = self.rfile.read(length)
            scenario = self.path.strip("/").split("/")[0]
            try:
                seen = _parse(self.path, dict(self.headers.items()), body)
            except ValueError as error:
                return self._reply(400, "application/json", json.dumps({"error": str(error)}).encode())
            server.seen.append(seen)
            if self.headers.get("authorization") != f"Bearer {server.token}":
                return self._reply(401, "application/json", b'{"error": "Invalid credentials"}')
            if scenario in _FAILURES:
                status, headers, payload = _FAILURES[scenario]
                return self._reply(status, "application/json", payload, headers)
            if scenario == "busy-later":
                later = email.utils.formatdate(time.time() + 30, usegmt=True)
                return self._reply(429, "application/json", b'{"error": "Rate limit reached"}', {"Retry-After": later})
            if scenario == "html":
                return self._reply(200, "text/html", b"<html><body>Service is under maintenance</body></html>")
            if scenario == "json":
                return self._reply(200, "application/json", b'{"generated_text": "not an image"}')
            if scenario == "slow":
                server.wait_slow()
            png = _answer(seen)
            if scenario == "truncated":
                png = png[: len(png) // 2]
            self._reply(200, "image/png", png)

        def _reply(self, status: int, content_type: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout, cancel)
                pass

    return Handler


def _parse(path: str, headers: dict[str, str], body: bytes) -> Seen:
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "")
    if content_type.startswith("image/"):
        return Seen(path, lowered, "image-to-image", Image.open(io.BytesIO(body)), {})
    if not content_type.startswith("application/json"):
        raise ValueError(f"unexpected content type {content_type!r}")
    document = json.loads(body)
    inputs, parameters = document.get("inputs"), document.get("parameters") or {}
    if not isinstance(inputs, str):
        raise ValueError("inputs must be a string")
    if "prompt" in parameters or "target_size" in parameters:  # image-to-image sends the image as base64
        return Seen(path, lowered, "image-to-image", Image.open(io.BytesIO(base64.b64decode(inputs))), parameters)
    return Seen(path, lowered, "text-to-image", inputs, parameters)


def _answer(seen: Seen) -> bytes:
    parameters = seen.parameters
    if seen.task == "text-to-image":
        width, height = int(parameters.get("width", 512)), int(parameters.get("height", 512))
        return gradient_png(seen.inputs, int(parameters.get("seed", 0)), width, height)
    target = parameters.get("target_size") or {}
    size = (int(target.get("width", seen.inputs.width)), int(target.get("height", seen.inputs.height)))
    return repainted_png(seen.inputs, parameters.get("prompt") or "", size)
