"""A job's inputs as bytes, so any worker process can run it and any front-end can show its result:
the request's fields as JSON and its images as raw pixels (lossless: the same pixels, the same key).
Also a finished result as bytes (its PNGs), for the results the result store did not keep.

Raw, not PNG: encoding costs a PNG's worth of CPU on the submit path (as much as encoding the
result: 0.2-0.4 s for a 600-px photo on a busy machine, seconds for 48 MP), copying costs under a
millisecond; the store holds a few more bytes for a short while (finished inputs are bounded by bytes).

Built and read back piece by piece, never as one `tobytes()` or `b"".join`: a single copy of a 48 MP
request's 190 MB holds the GIL for a quarter of a second, and the event loop every page and API call
shares stalls with it (issue 13: /health under a flood of large uploads)."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Iterable

import numpy as np
from PIL import Image

from core.keys import pixel_chunks
from core.requests import GenerateRequest, InpaintRequest, OutpaintRequest
from core.runner import Result, result_from_pngs

Request = GenerateRequest | InpaintRequest | OutpaintRequest

_HEADER = struct.Struct(">I")
_BY_TASK = {kind.task: kind for kind in (GenerateRequest, InpaintRequest, OutpaintRequest)}
_BYTES_PER_PIXEL = {"L": 1, "P": 1, "LA": 2, "PA": 2, "RGB": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4}  # raw, 8 bits a band


def encode_request(request: Request) -> memoryview:
    """The request as bytes (a buffer any store takes as it takes bytes)."""
    images = {field.name: getattr(request, field.name) for field in dataclasses.fields(request)}
    images = {name: value for name, value in images.items() if isinstance(value, Image.Image)}
    pixels = [_raw_pixels(image) for image in images.values()]
    described = [
        {"name": name, "mode": image.mode, "size": list(image.size), "bytes": size}
        for (name, image), (size, _) in zip(images.items(), pixels, strict=True)
    ]
    header = json.dumps({"fields": request.parameters(), "images": described}).encode()
    parts: list[tuple[int, Iterable[bytes]]] = [(_HEADER.size, [_HEADER.pack(len(header))]), (len(header), [header])]
    view = memoryview(np.empty(sum(size for size, _ in parts + pixels), np.uint8))  # each byte is written below
    offset = 0
    for size, chunks in parts + pixels:
        end = offset + size
        for chunk in chunks:  # small copies: the GIL changes hands between them
            view[offset : offset + len(chunk)] = chunk
            offset += len(chunk)
        if offset != end:
            raise RuntimeError("the pixel encoder wrote an unexpected number of bytes")
    return view


def _raw_pixels(image: Image.Image) -> tuple[int, Iterable[bytes]]:
    """(size, chunks) of `image.tobytes()`; the size known up front for the modes requests hold."""
    per_pixel = _BYTES_PER_PIXEL.get(image.mode)
    if per_pixel is not None:
        return image.width * image.height * per_pixel, pixel_chunks(image)
    chunks = list(pixel_chunks(image))
    return sum(map(len, chunks)), chunks


def decode_request(data: bytes | memoryview, *, only: tuple[str, ...] | None = None) -> Request:
    """The request back; `only` names the images to decode (the others stay None)."""
    data = memoryview(data).cast("B")  # slices below are views: no copy of the pixels
    (length,) = _HEADER.unpack_from(data)
    header = json.loads(bytes(data[_HEADER.size : _HEADER.size + length]))
    fields = dict(header["fields"])
    kind = _BY_TASK[fields.pop("task")]
    for name in ("points", "box"):  # JSON lists back to the request's tuples
        if isinstance(fields.get(name), list):
            fields[name] = tuple(fields[name])
    offset = _HEADER.size + length
    for image in header["images"]:
        if only is None or image["name"] in only:
            fields[image["name"]] = Image.frombytes(
                image["mode"], tuple(image["size"]), data[offset : offset + image["bytes"]]
            )
        offset += image["bytes"]
    return kind(**fields)


def request_image(data: bytes | memoryview) -> Image.Image | None:
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


def encode_result(result: Result) -> bytes:
    """A result's PNGs (encoded now if they were not) and what a Result needs besides them."""
    pngs = result.pngs
    header = json.dumps(
        {
            "parameters": result.parameters,
            "filtered": list(result.filtered),
            "elapsed_s": result.elapsed_s,
            "pngs": [len(png) for png in pngs],
        }
    ).encode()
    return b"".join([_HEADER.pack(len(header)), header, *pngs])


def decode_result(data: bytes, key: str) -> Result:
    (length,) = _HEADER.unpack_from(data)
    header = json.loads(data[_HEADER.size : _HEADER.size + length])
    offset, pngs = _HEADER.size + length, []
    for size in header["pngs"]:
        pngs.append(data[offset : offset + size])
        offset += size
    return result_from_pngs(header["parameters"], key, False, tuple(header["filtered"]), header["elapsed_s"], tuple(pngs))
