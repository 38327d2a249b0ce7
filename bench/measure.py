"""Timing two ways of doing the same work side by side, and the spread of what was measured.

This machine is shared and noisy (its load swings the same work by 2-4x within a minute), so a
figure is never one timing divided by another taken minutes apart: each repetition times A and B
back to back, alternating which goes first, and the figure is the median of the per-repetition
ratios, with its spread.

Every timing has two clocks: wall time (what a user waits; the figures use it) and the CPU time of
the process (user + system, all its threads). CPU time barely moves when other work shares the
machine, so its ratio shows a small overhead that wall-clock noise hides; it leaves out waiting on
the disk (fsync), which only the wall clock sees.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Median, min/max and quartiles of repeated measurements (all runs kept, in order)."""

    median: float
    minimum: float
    maximum: float
    q1: float
    q3: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one measurement")
        ordered = sorted(values)
        if len(ordered) >= 2:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            q1 = q3 = ordered[0]
        return cls(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, tuple(values))

    def as_json(self) -> dict:
        return {
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "q1": self.q1,
            "q3": self.q3,
            "runs": list(self.runs),
        }


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # seconds of CPU used by the measured process(es), all threads


def timed(call: Callable[[], object]) -> Timing:
    """The wall and CPU time of `call()` in this process."""
    cpu_started, started = time.process_time(), time.perf_counter()
    call()
    return Timing(time.perf_counter() - started, time.process_time() - cpu_started)


def queue_to_png_bytes(queue, request) -> bytes:
    """The path a user waits on: submit `request` to the job queue (as the pages and the API do), wait,
    and take the first result's PNG bytes (what the user downloads). A result served from the store
    is refused: a timed run must be a miss."""
    job = queue.submit(request, session="bench")
    queue.wait(job, timeout=600)
    result = queue.result(job)
    if result.cached:
        raise RuntimeError("a timed run was served from the store: it must be a miss")
    return result.pngs[0]


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished (waited-for) child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class SideBySide:
    """The timings of A and of B for each repetition, measured back to back."""

    a: tuple[Timing, ...]
    b: tuple[Timing, ...]

    @property
    def ratios(self) -> list[float]:
        return [a.wall / b.wall for a, b in zip(self.a, self.b, strict=True)]

    @property
    def cpu_ratios(self) -> list[float]:
        return [a.cpu / b.cpu for a, b in zip(self.a, self.b, strict=True) if a.cpu > 0 and b.cpu > 0]

    def details(self, a_name: str, b_name: str) -> dict:
        """The timings behind the ratio, for a figure's details."""
        return {
            f"{a_name}_s": Spread.of([timing.wall for timing in self.a]).as_json(),
            f"{b_name}_s": Spread.of([timing.wall for timing in self.b]).as_json(),
            "cpu_time_ratio": Spread.of(self.cpu_ratios).as_json() if self.cpu_ratios else None,
        }


def side_by_side(time_a: Callable[[int], Timing], time_b: Callable[[int], Timing], repeats: int) -> SideBySide:
    """Run A and B `repeats` times each, A first on even repetitions and B first on odd ones.

    Each callable gets the repetition number (to vary seeds, so a result store never answers) and
    returns the timing of the part it measures: setup it needs stays outside the timing.
    """
    a_times, b_times = [], []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            a = time_a(repeat)
            b = time_b(repeat)
        else:
            b = time_b(repeat)
            a = time_a(repeat)
        a_times.append(a)
        b_times.append(b)
    return SideBySide(tuple(a_times), tuple(b_times))
