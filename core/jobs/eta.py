"""Estimated waits: measured costs per kind of job, and when each unfinished job should finish.

Workers record what each finished job cost (seconds per step, and the fixed parts before the first
step and after the last) in the job store, so every front-end estimates from the same figures. A
size never measured is scaled from the same model's nearest measured size by pixel ratio (step
time grows about linearly with pixels on these models); an unmeasured model has no estimate, and
the pages say "estimating…".
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.jobs.record import JobRecord, JobState, Progress

SMOOTHING = 0.3  # weight of the newest sample: follows a warming cache or a busy machine quickly


@dataclass(frozen=True)
class Cost:
    """Measured cost of one kind of job: seconds per step, and the fixed parts around the step loop."""

    per_step: float
    head: float  # from the start of the run to the engine's first report (model load, preprocessing)
    tail: float  # from the last report to the result (decode, paste back, encode, store)

    def seconds(self, steps: int) -> float:
        return self.head + steps * self.per_step + self.tail

    def smoothed(self, sample: Cost) -> Cost:
        """This cost moved towards a new sample; a NaN part of the sample (not measured) is kept."""
        return Cost(
            *(
                old if math.isnan(new) else (1 - SMOOTHING) * old + SMOOTHING * new
                for old, new in zip(
                    (self.per_step, self.head, self.tail), (sample.per_step, sample.head, sample.tail), strict=True
                )
            )
        )


def first_cost(sample: Cost) -> Cost:
    """The estimate after one sample: unmeasured parts (NaN) count as zero."""
    return Cost(*(0.0 if math.isnan(part) else part for part in (sample.per_step, sample.head, sample.tail)))


def cost_key(record: JobRecord) -> str:
    return f"{record.model}|{record.task}|{max(1, record.work_pixels)}"


def measure(record: JobRecord, progress: Progress, finished_at: float, *, steps_only: bool = False) -> Cost | None:
    """What a run cost, from its reports; None before two reports. Cancelled runs give only the step time."""
    per_step = progress.step_seconds()
    if per_step is None or record.started_at is None:
        return None
    (first_step, first_time), (_, last_time) = progress.first_report, progress.last_report
    if steps_only:
        return Cost(per_step, math.nan, math.nan)
    # Steps before the first report (usually none, or step 0 itself) count as head time.
    head = max(0.0, first_time - record.started_at - first_step * per_step)
    return Cost(per_step, head, max(0.0, finished_at - last_time))


def lookup(costs: Mapping[str, Cost], record: JobRecord) -> Cost | None:
    exact = costs.get(cost_key(record))
    if exact is not None:
        return exact
    pixels = max(1, record.work_pixels)
    same_model = []
    for key, cost in costs.items():
        model, task, measured = key.rsplit("|", 2)
        if model == record.model:
            same_model.append((task != record.task, abs(math.log(int(measured) / pixels)), int(measured), cost))
    if not same_model:
        return None
    _, _, measured, cost = min(same_model, key=lambda item: item[:3])  # same task first, then the nearest size
    scale = pixels / measured
    return Cost(cost.per_step * scale, cost.head, cost.tail * scale)


def remaining(record: JobRecord, progress: Progress, cost: Cost | None, now: float) -> float | None:
    """Seconds until a job finishes once started: its own measured step rate once it has one."""
    if record.state.finished:
        return 0.0
    total = progress.total or record.total_steps
    if record.state is JobState.QUEUED:
        return cost.seconds(total) if cost is not None else None
    rate = progress.step_seconds()
    if rate is None and cost is not None:
        rate = cost.per_step
    if rate is None:
        return None
    tail = cost.tail if cost is not None else 0.0
    if progress.last_report is None:  # still loading the model or preparing the images
        head = cost.head if cost is not None else 0.0
        return max(0.0, head - (now - (record.started_at or now))) + total * rate + tail
    step, at = progress.last_report
    return max(0.0, (total - step) * rate + tail - (now - at))


def finish_times(
    queued: Sequence[JobRecord],
    running: Sequence[tuple[JobRecord, Progress]],
    costs: Mapping[str, Cost],
    workers: int,
    now: float,
) -> dict[str, float | None]:
    """Seconds until each job finishes: running ones from their progress, queued ones (in the order
    workers will take them) on whichever of `workers` frees up first. None where a job ahead, or
    the job itself, has no estimate."""
    etas: dict[str, float | None] = {}
    free_at: list[float] = []
    unknown = False
    for record, progress in running:
        left = remaining(record, progress, lookup(costs, record), now)
        etas[record.id] = left
        unknown = unknown or left is None
        free_at.append(left or 0.0)
    slots = max(1, workers, len(running))
    free_at = sorted(free_at)[:slots] + [0.0] * max(0, slots - len(free_at))
    heapq.heapify(free_at)
    for record in queued:
        cost = lookup(costs, record)
        start = heapq.heappop(free_at)
        own = cost.seconds(record.total_steps) if cost is not None else None
        unknown = unknown or own is None
        etas[record.id] = None if unknown else start + own
        heapq.heappush(free_at, start + (own or 0.0))
    return etas
