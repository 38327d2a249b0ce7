"""Admission before decoding: queue places taken before any pixel is decoded, and decodes bounded in bytes."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from core import admission, images
from core.admission import Admission, DecodeGate
from core.errors import BusyError


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def _declared_png(width: int, height: int) -> bytes:
    """A PNG header declaring any size, with a few bytes of pixel data behind it (only the header is ever read)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )


class _Queue:
    """The part of the job queue admission reads, with jobs that stay unfinished."""

    def __init__(self, max_queue: int = 32, max_per_session: int = 4):
        self.max_queue, self.max_per_session = max_queue, max_per_session
        self.queued: list[str] = []

    def queue_length(self) -> int:
        return len(self.queued)

    def client_load(self, session: str) -> int:
        return sum(1 for owner in self.queued if owner == session)


def test_places_of_requests_still_decoding_count_against_the_client_and_the_queue():
    gate, queue = Admission(), _Queue(max_queue=5, max_per_session=2)
    queue.queued.append("alice")
    with gate.place(queue, "alice"):
        with pytest.raises(BusyError, match="you already have 2 jobs waiting or running"), gate.place(queue, "alice"):
            pass
        others = [gate.place(queue, name) for name in ("bob", "carol", "dave")]
        for place in others:
            place.__enter__()
        with pytest.raises(BusyError, match="the studio is busy: 5 jobs are waiting"), gate.place(queue, "erin"):
            pass
        for place in others:
            place.__exit__(None, None, None)
    with gate.place(queue, "alice"):  # places are given back, whatever happened inside
        pass


def test_a_burst_from_one_client_gets_its_limit_and_no_more():
    gate, queue = Admission(), _Queue(max_per_session=4)
    release = threading.Event()

    def request(_: int) -> str:
        try:
            with gate.place(queue, "10.0.0.1"):
                release.wait(5)  # decoding
                return "placed"
        except BusyError:
            return "busy"

    with ThreadPoolExecutor(12) as pool:
        answers = [pool.submit(request, number) for number in range(12)]
        time.sleep(0.3)
        release.set()
    assert sorted(answer.result() for answer in answers) == ["busy"] * 8 + ["placed"] * 4


def test_decodes_beyond_the_budget_wait_their_turn_and_a_long_wait_is_busy():
    gate = DecodeGate(capacity=100)
    with gate.hold(60):
        entered = threading.Event()

        def second() -> None:
            with gate.hold(60):
                entered.set()

        waiter = threading.Thread(target=second)
        waiter.start()
        assert not entered.wait(0.2)  # 120 bytes would not fit: it waits
        with pytest.raises(BusyError, match="decoding other large images"), gate.hold(60, timeout=0.1):
            pass
        with gate.hold(40):  # what fits goes ahead
            pass
    waiter.join(5)
    assert entered.is_set() and gate.in_use == 0
    with gate.hold(1000):  # larger than the whole budget: runs, alone
        assert gate.in_use == 1000


def test_load_image_decodes_under_the_gate_after_its_header_is_checked(monkeypatch):
    gate = DecodeGate(capacity=10)
    monkeypatch.setattr(images, "DECODES", gate)
    seen = []
    real_hold = gate.hold

    def hold(nbytes, timeout=admission.DECODE_WAIT_S):
        seen.append(nbytes)
        return real_hold(nbytes, timeout)

    monkeypatch.setattr(gate, "hold", hold)
    assert images.load_image(_png(400, 300)).size == (400, 300)
    assert seen == [400 * 300 * admission.DECODE_BYTES_PER_PIXEL]
    with pytest.raises(images.BadImageError, match="the limit is"):  # refused by its header: no decode asked for
        images.load_image(_declared_png(20000, 20000))
    assert len(seen) == 1


def test_a_place_is_given_back_once_its_job_is_in_the_queue_so_the_job_never_counts_twice():
    gate, queue = Admission(), _Queue(max_per_session=2)
    with gate.place(queue, "alice"):
        queue.queued.append("alice")  # the job is in the queue now: the queue counts it
        gate.submitted()
        # One job: room for a second (counted twice, it would be refused), and none for a third.
        with gate.place(queue, "alice"), pytest.raises(BusyError, match="you already have 2 jobs"), gate.place(
            queue, "alice"
        ):
            pass
