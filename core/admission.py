"""Letting work in before it costs memory: queue places are taken before any pixel is decoded, and
how many bytes of pixels are being decoded at once is bounded by this host's memory.

A 125 KB PNG can declare 48 MP (8000x6000 of zeros compresses ~1000:1) and decoding it takes about
400 MB for a moment. So, at every entry that decodes uploads (API, pages, batch):
1. `Admission.place(queue, session)` takes a place in the queue first: a client over its limit of
   unfinished jobs, or a full queue, is refused (429) before its images are even decoded. Places
   of requests still decoding count as taken, so a burst cannot slip past the limit while decoding.
2. `load_image` (core/images.py) reads the image's header, checks its size, then decodes under
   `DecodeGate.hold`: decodes whose pixels would not fit in a quarter of the host's memory budget
   (`core.memory.budget`, the same one the model-fit check uses) wait their turn, and one that
   waits too long is refused as busy.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from core.clients import client_of, over_the_limit
from core.errors import BusyError

DECODE_SHARE = 4  # decodes in progress may use 1/DECODE_SHARE of the memory budget
DECODE_WAIT_S = 30.0
# Bytes a decode takes per pixel, at most: Pillow keeps 8-bit RGB as 4 bytes a pixel, and the
# conversion to RGB (from palette, grey, CMYK...) needs a second image of that size.
DECODE_BYTES_PER_PIXEL = 8


class _Queue(Protocol):
    max_queue: int
    max_per_session: int

    def queue_length(self) -> int: ...

    def client_load(self, session: str) -> int: ...


@dataclass(eq=False)  # each place is itself: two places of one client are two
class _Place:
    client: str


class Admission:
    """Queue places held by requests between their arrival and their `submit` (thread-safe), counted per
    client as the queue counts them (core/clients.py: per address, pages and API together)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._held = threading.local()  # this thread's places not yet given back, innermost last

    @contextmanager
    def place(self, queue: _Queue, session: str) -> Iterator[None]:
        """Hold a place for `session` while the body decodes and submits; BusyError when none is left.
        Call `submitted()` as soon as the queue has the job: from then on the queue counts it."""
        with self._lock:
            waiting = queue.queue_length() + sum(self._pending.values())
            if waiting >= queue.max_queue:
                raise BusyError(f"the studio is busy: {waiting} jobs are waiting; try again in a minute")
            client = client_of(session)
            mine = self._pending[client] + queue.client_load(session)
            if mine >= queue.max_per_session:
                raise over_the_limit(session, mine)
            self._pending[client] += 1
        held = self._places_held()
        token = _Place(client)
        held.append(token)
        try:
            yield
        finally:
            if any(place is token for place in held):  # not given back by `submitted()` yet
                self._give_back(held, token)

    def submitted(self) -> None:
        """Give back this thread's innermost place: its job is in the queue now, which counts it from
        here on. Held any longer, the job would count twice and a client with room left be refused."""
        held = self._places_held()
        if held:
            self._give_back(held, held[-1])

    def _places_held(self) -> list[_Place]:
        if not hasattr(self._held, "places"):
            self._held.places = []
        return self._held.places

    def _give_back(self, held: list[_Place], token: _Place) -> None:
        held[:] = [place for place in held if place is not token]
        client = token.client
        with self._lock:
            self._pending[client] -= 1
            if self._pending[client] <= 0:
                del self._pending[client]


class DecodeGate:
    """A byte budget for decodes in progress. A decode larger than the whole budget still runs,
    alone, so the pixel limits (not this gate) decide what is too large."""

    def __init__(self, capacity: int | None = None):
        self._capacity = capacity
        self._used = 0
        self._changed = threading.Condition()

    @property
    def capacity(self) -> int:
        if self._capacity is None:
            from core.memory import budget  # psutil and /proc reads: once, on the first large decode

            self._capacity = max(1, budget().bytes // DECODE_SHARE)
        return self._capacity

    @contextmanager
    def hold(self, nbytes: int, timeout: float = DECODE_WAIT_S) -> Iterator[None]:
        capacity = self.capacity
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._used and self._used + nbytes > capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BusyError("the studio is decoding other large images; try again in a minute")
                self._changed.wait(remaining)
            self._used += nbytes
        try:
            yield
        finally:
            with self._changed:
                self._used -= nbytes
                self._changed.notify_all()

    @property
    def in_use(self) -> int:
        with self._changed:
            return self._used


DECODES = DecodeGate()  # the process's gate: every load_image decodes under it
PLACES = Admission()  # the process's queue places: the API surfaces and the batch runner take theirs here


__all__ = ["DECODES", "PLACES", "Admission", "DecodeGate"]
