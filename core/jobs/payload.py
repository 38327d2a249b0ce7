"""A job's inputs as bytes, so any worker process can run it and any front-end can show its result:
the request's fields as JSON and its images as PNGs (lossless: the same pixels, the same key)."""

from __future__ import annotations

import dataclasses
import io
import json
import struct

from PIL import Image

from core.requests import GenerateRequest, InpaintRequest, OutpaintRequest

Request = GenerateRequest | InpaintRequest | OutpaintRequest

_HEADER = struct.Struct(">I")
_BY_TASK = {kind.task: kind for kind in (GenerateRequest, InpaintRequest, OutpaintRequest)}


def encode_request(request: Request) -> bytes:
    images = {field.name: getattr(request, field.name) for field in dataclasses.fields(request)}
    images = {name: value for name, value in images.items() if isinstance(value, Image.Image)}
    pngs = []
    for image in images.values():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)  # fast; inputs are short-lived
        pngs.append(buffer.getvalue())
    fields = request.parameters()
    header = {"fields": fields, "images": list(images), "sizes": [len(png) for png in pngs]}
    encoded = json.dumps(header).encode()
    return b"".join([_HEADER.pack(len(encoded)), encoded, *pngs])


def decode_request(data: bytes, *, only: tuple[str, ...] | None = None) -> Request:
    """The request back; `only` names the images to decode (the others stay None)."""
    (length,) = _HEADER.unpack_from(data)
    header = json.loads(data[_HEADER.size : _HEADER.size + length])
    fields = dict(header["fields"])
    kind = _BY_TASK[fields.pop("task")]
    for name in ("points", "box"):  # JSON lists back to the request's tuples
        if isinstance(fields.get(name), list):
            fields[name] = tuple(fields[name])
    offset = _HEADER.size + length
    for name, size in zip(header["images"], header["sizes"], strict=True):
        if only is None or name in only:
            image = Image.open(io.BytesIO(data[offset : offset + size]))
            image.load()
            fields[name] = image
        offset += size
    return kind(**fields)


def request_image(data: bytes) -> Image.Image | None:
    """Only the input image (what an edit's stored result is composed onto)."""
    return getattr(decode_request(data, only=("image",)), "image", None)


def output_sizes(request: Request) -> list[tuple[int, int]]:
    """The sizes of the images a request produces, known before it runs."""
    if request.task == "inpaint":
        return [request.image.size]
    if request.task == "outpaint":
        width, height = request.image.size
        return [(width + request.left + request.right, height + request.top + request.bottom)]
    return [(request.width, request.height)] * request.num_images
