"""What every API surface (/api/v1, and the client-compatible ones) shares to keep the event loop free.

The API runs on the event loop that also serves every page, so nothing heavy runs on it:
- `heavy(function, *args)` runs CPU work (decoding uploads, PNG encoding, base64) in a thread of its
  own pool, a few at a time (`HEAVY_THREADS`), at a lower priority in the server (core/priority.py),
  apart from the threads Streamlit serves its files with and those answering status reads;
- `json_response(build, *args)` builds a body and serialises it to JSON in one such thread and
  returns the finished response (a 48 MP result is ~100 MB of base64: never `json.dumps` on the loop);
- `admitted(session)` holds a place in the queue while a request's images are decoded and its jobs
  submitted (core/admission.py), so a client over its limit is refused before costing any memory;
- `quick(function, *args)` runs cheap blocking calls (queue status, health) on threads of their own,
  so they answer in milliseconds however much heavy work waits.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
import secrets
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
from starlette.responses import Response, StreamingResponse

from core import services
from core.admission import PLACES
from core.priority import lower_this_thread

T = TypeVar("T")


class PerLoopLimiter:
    """A thread limiter for each event loop: an anyio limiter belongs to the loop that first waits on it
    (the server has one; test clients start one per request)."""

    def __init__(self, tokens: int):
        self.tokens = tokens
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()
        limiter = self._by_loop.get(loop)
        if limiter is None:
            limiter = self._by_loop[loop] = anyio.CapacityLimiter(self.tokens)
        return limiter


HEAVY_THREADS = 2  # CPU-bound work: more threads than cores would only contend for the GIL
QUICK = PerLoopLimiter(16)  # status reads: milliseconds each, never behind heavy work
# One pool for the process, whatever the event loop (a pool, unlike an anyio limiter, belongs to none).
_HEAVY_POOL = ThreadPoolExecutor(HEAVY_THREADS, thread_name_prefix="studio-api-heavy", initializer=lower_this_thread)


async def heavy(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_HEAVY_POOL, functools.partial(function, *args))


async def quick(function: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(function, *args, limiter=QUICK.get())


class Base64:
    """Bytes a JSON body carries as base64 text (a result's PNG), encoded slice by slice by `json_parts`.

    Encoding 100 MB with one `b64encode`, then `json.dumps` of the 130 MB string and `.encode()`, hold
    the GIL for ~0.4 s, ~1.1 s and ~0.1 s: every other thread, the event loop included, waits. Slices
    of `_SLICE` bytes hold it for a millisecond or two each, and the body goes out as those parts."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


_SLICE = 3 * 256 * 1024  # bytes of a Base64 encoded at a time: 1 MB of text
_STREAMED_OVER = 4 * 1024 * 1024  # larger bodies go out part by part, never joined into one buffer


def json_bytes(content: Any) -> bytes:
    """JSON as Starlette's JSONResponse writes it (UTF-8, no NaN, compact)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def json_parts(content: Any) -> list[bytes]:
    """`content` as JSON (as `json_bytes` writes it), in parts whose concatenation is the body: each
    `Base64` in it becomes a JSON string encoded a slice at a time."""
    token = secrets.token_hex(16)  # no JSON a client sent can hold it
    found: list[bytes] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Base64):
            found.append(value.data)
            return f"{token}:{len(found) - 1}"
        if isinstance(value, dict):
            return {name: swap(item) for name, item in value.items()}
        if isinstance(value, list | tuple):
            return [swap(item) for item in value]
        return value

    pieces = re.split(rb'"' + token.encode() + rb':(\d+)"', json_bytes(swap(content)))
    parts = [pieces[0]]
    for index, text in zip(pieces[1::2], pieces[2::2], strict=True):
        data = memoryview(found[int(index)])
        parts += [b'"', *(base64.b64encode(data[start : start + _SLICE]) for start in range(0, len(data), _SLICE))]
        parts += [b'"', text]
    return [part for part in parts if part]


async def json_response(
    build: Callable[..., Any], *args: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """`build(*args)` serialised to JSON, both in a heavy-work thread; the response is ready to send
    (a large one part by part, with its Content-Length: the loop copies no 100 MB buffer either)."""
    parts = await heavy(lambda: json_parts(build(*args)))
    size = sum(map(len, parts))
    if size <= _STREAMED_OVER:
        return Response(b"".join(parts), status_code=status_code, headers=headers, media_type="application/json")

    async def each() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    headers = {**(headers or {}), "content-length": str(size)}
    return StreamingResponse(each(), status_code=status_code, headers=headers, media_type="application/json")


@contextmanager
def admitted(session: str) -> Iterator[None]:
    """A queue place for `session` while its uploads are decoded and its jobs submitted (blocking: use it in a
    worker thread): BusyError, before anything is decoded, when the client or the queue has no place left."""
    with PLACES.place(services.queue(), session):
        yield


__all__ = [
    "HEAVY_THREADS",
    "QUICK",
    "Base64",
    "PerLoopLimiter",
    "admitted",
    "heavy",
    "json_bytes",
    "json_parts",
    "json_response",
    "quick",
]
