"""A job's inputs as bytes, so any worker process can run it and any front-end can show its result:
the request's fields as JSON and its images as raw pixels (lossless: the same pixels, the same key).
Also a finished result as bytes (its PNGs), for the results the result store did not keep.

Raw, not PNG: encoding costs a PNG's worth of CPU on the submit path (as much as encoding the
result: 0.2-0.4 s for a 600-px photo on a busy machine, seconds for 48 MP), copying costs under a
millisecond; the store holds a few more bytes for a short while (finished inputs are bounded by bytes).

Written piece by piece and read back as views, never as one `tobytes()` or `b"".join`: a single copy
of a 48 MP request's 190 MB holds the GIL for a quarter of a second, and the event loop every page and
API call shares stalls with it (issue 13: /health under a flood of large uploads)."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Iterator

from PIL import Image

from core.keys import pixel_chunks
from core.requests import GenerateRequest, InpaintRequest, OutpaintRequest
from core.runner import Result, result_from_pngs

Request = GenerateRequest | InpaintRequest | OutpaintRequest

_HEADER = struct.Struct(">I")
_BY_TASK = {kind.task: kind for kind in (GenerateRequest, InpaintRequest, OutpaintRequest)}
_BYTES_PER_PIXEL = {"L": 1, "P": 1, "LA": 2, "PA": 2, "RGB": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4}  # raw, 8 bits a band


class EncodedRequest:
    """A request's inputs as bytes, produced piece by piece as they are written (`core.jobs.inputs`):
    no copy of the whole request is ever made."""

    def __init__(self, request: Request):
        named = [(field.name, getattr(request, field.name)) for field in dataclasses.fields(request)]
        named = [(name, value) for name, value in named if isinstance(value, Image.Image)]
        self._images = [image for _, image in named]
        sizes = [_raw_size(image) for image in self._images]
        described = [
            {"name": name, "mode": image.mode, "size": list(image.size), "bytes": size}
            for (name, image), size in zip(named, sizes, strict=True)
        ]
        header = json.dumps({"fields": request.parameters(), "images": described}).encode()
        self._head = _HEADER.pack(len(header)) + header
        self.size = len(self._head) + sum(sizes)

    def chunks(self) -> Iterator[bytes]:
        """The bytes, in pieces of at most a few hundred kilobytes (each time it is called)."""
        yield self._head
        for image in self._images:
            yield from pixel_chunks(image)


def _raw_size(image: Image.Image) -> int:
    """len(image.tobytes()): known up front for the modes requests hold, counted otherwise."""
    per_pixel = _BYTES_PER_PIXEL.get(image.mode)
    if per_pixel is not None:
        return image.width * image.height * per_pixel
    return sum(map(len, pixel_chunks(image)))


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
