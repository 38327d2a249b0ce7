"""Job store figures: queue overhead per job on SQLite and Redis vs the in-memory queue it replaced,
throughput of 2 worker processes vs 1 on a batch of OpenCV jobs, and recovery after kill -9.

    python -m bench --only job_store [--quick]

(a) overhead per job = time from submit to the result's PNG through a queue with one in-process
    worker, minus the same request run directly on the Studio (no result store, so nothing is a
    cache hit). The in-memory queue is the one this replaced (core/jobs.py at BEFORE_COMMIT, loaded
    from git). Each contender runs in a process of its own, as the app hosts its one queue; jobs go
    to them one at a time, in rotating order. Reported against: queued <= 1.02 x direct + 5 ms on both stores (stricter than the
    issue's goal). The issue's goal, also reported: each durable store's queue time <= 1.02 x the
    in-memory queue's + 5 ms, from the same interleaved runs.
(b) throughput = time for a batch of OpenCV jobs with 1 worker process / with 2 (`python -m core
    worker`, started and idle before the clock starts; each run on fresh images). Target >= 1.7x.
(c) recovery = from kill -9 of the worker running a job to another worker running it (lease 1 s).
    Target <= lease + 1 s.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.figures import Figure, Outcome, Target
from bench.measure import Spread
from bench.workspace import REPOSITORY, Workspace

NAME = "job_store"
BEFORE_COMMIT = "2c06df1"  # the last main commit with the in-memory core/jobs.py
LEASE_S = 1.0
OVERHEAD_RATIO, OVERHEAD_SLACK_S = 1.02, 0.005
BEFORE, DURABLE = "in-memory (before)", ("sqlite", "redis")


def removal(side: int, radius: int, seed: int, *, whole_image: bool = False):
    from core.requests import InpaintRequest

    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    mask = Image.new("L", (side, side), 0)
    box = (side // 2 - radius, side // 2 - radius, side // 2 + radius, side // 2 + radius)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return InpaintRequest(model="opencv-telea", image=Image.fromarray(pixels), mask=mask, whole_image=whole_image)


def _old_queue_class():
    """The in-memory JobQueue this work replaced, from git, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE_COMMIT}:core/jobs.py"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="old-jobs-")) / "old_jobs.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_jobs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.JobQueue


# (a) ---------------------------------------------------------------------------------------------


def _through_queue(queue, request) -> float:
    started = time.perf_counter()
    job = queue.submit(request, session="bench")
    status = queue.wait(job, timeout=120)
    result = queue.result(job)
    png = result.pngs[0]
    elapsed = time.perf_counter() - started
    assert status.state.value == "done" and png, status
    assert not status.cached and not result.cached, "a timed run must really run, not come from a store"
    return elapsed


def _direct(studio, request) -> float:
    started = time.perf_counter()
    result = studio.run(studio.prepare(request))
    png = result.pngs[0]
    elapsed = time.perf_counter() - started
    assert png and not result.cached, "a timed run must really run, not come from a store"
    return elapsed


CONTENDERS = {"direct": "direct", BEFORE: "before", "sqlite": "sqlite", "redis": "redis"}  # name -> child kind


def serve(kind: str, folder: str, redis_url: str) -> None:
    """One contender in a process of its own, as the app hosts its one queue (several queues in one
    process wake each other's idle workers and skew the figures): runs the jobs sent on stdin
    ("side radius seed"), one at a time, and answers each with its seconds."""
    from core.catalogue import Catalogue
    from core.jobs import JobQueue, open_store
    from core.pool import ModelPool
    from core.runner import Studio

    studio = Studio(Catalogue.load(None), ModelPool(1), store=None)  # no result store: every run really runs
    queue = None
    if kind == "before":
        queue = _old_queue_class()(studio)
    elif kind in DURABLE:
        queue = JobQueue(studio, open_store(redis_url if kind == "redis" else None, Path(folder)))
    for line in sys.stdin:
        side, radius, seed = map(int, line.split())
        request = removal(side, radius, seed)
        print(_direct(studio, request) if queue is None else _through_queue(queue, request), flush=True)
    if queue is not None:
        queue.shutdown()
        store = getattr(queue, "store", None)  # the in-memory queue has none
        if store is not None:
            store.close()


@contextmanager
def contenders(workspace: Workspace, redis_url: str):
    with ExitStack() as stack:
        children = {}
        for name, kind in CONTENDERS.items():
            folder = workspace.scratch(f"job-store-overhead-{kind}")
            child = subprocess.Popen(
                [sys.executable, "-m", "bench.job_store", kind, str(folder), redis_url],
                cwd=REPOSITORY,
                env=workspace.environment(OMP_NUM_THREADS="1"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            stack.callback(_close, child)
            children[name] = child
        yield children


def _close(child: subprocess.Popen) -> None:
    child.stdin.close()
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _timed(child: subprocess.Popen, side: int, radius: int, seed: int) -> float:
    child.stdin.write(f"{side} {radius} {seed}\n")
    child.stdin.flush()
    answer = child.stdout.readline()
    if not answer:
        raise RuntimeError(f"a contender process stopped (exit {child.wait()})")
    return float(answer)


def overhead_figures(workspace: Workspace, redis_url: str) -> list[Figure]:
    cases = {"opencv 160 px, 24 px mask": (160, 12), "opencv 600 px, 128 px mask": (600, 64)}
    # Pairs differ by +-15 ms at 600 px (this host's speed changes by the second): many pairs pin the medians.
    repeats = workspace.repeats(100, 5)
    figures = []
    with contenders(workspace, redis_url) as children:
        for case, (side, radius) in cases.items():
            seed = iter(range(10**6))
            for child in children.values():  # warm every path
                for _ in range(3):
                    _timed(child, side, radius, next(seed))
            times: dict[str, list[float]] = {name: [] for name in children}
            for repeat in range(repeats):
                order = list(children)
                order = order[repeat % len(order) :] + order[: repeat % len(order)]  # rotate who goes first
                for name in order:
                    times[name].append(_timed(children[name], side, radius, next(seed)))
            queues = [name for name in children if name != "direct"]
            figures += [_extra_time(f"queue overhead per job, {name}", case, times, name, "direct") for name in queues]
            # The issue's own goal compares each durable store with the in-memory queue it replaced.
            figures += [
                _extra_time(f"queue time per job, {name} - in-memory (before)", case, times, name, BEFORE)
                for name in DURABLE
            ]
    return figures


def _extra_time(figure: str, case: str, times: dict[str, list[float]], name: str, baseline: str) -> Figure:
    """How much longer `name` took than `baseline`, pair by pair (they ran interleaved), against the goal
    `name` <= OVERHEAD_RATIO x `baseline` + OVERHEAD_SLACK_S: the median of those differences (the
    figure shown) <= (OVERHEAD_RATIO - 1) x the baseline's median + OVERHEAD_SLACK_S."""
    extra_ms = [1000 * (this - that) for this, that in zip(times[name], times[baseline], strict=True)]
    this, that = statistics.median(times[name]), statistics.median(times[baseline])
    allowed_ms = 1000 * ((OVERHEAD_RATIO - 1) * that + OVERHEAD_SLACK_S)
    label = "queued" if baseline == "direct" else name
    return Figure(
        figure=figure,
        case=case,
        value=Spread.of(extra_ms),
        unit="ms",
        target=Target.report(f"{label} <= {OVERHEAD_RATIO} x {baseline} + {OVERHEAD_SLACK_S * 1000:.0f} ms"),
        met=statistics.median(extra_ms) <= allowed_ms,
        details={f"{baseline}_ms_median": 1000 * that, "queued_ms_median": 1000 * this, "allowed_extra_ms": allowed_ms},
    )


# (b) and (c): worker processes ---------------------------------------------------------------------


@contextmanager
def worker_processes(count: int, environ: dict[str, str], logs: Path):
    with ExitStack() as stack:
        children = []
        for index in range(count):
            log = stack.enter_context(open(logs / f"worker-{index}-{time.monotonic_ns()}.log", "wb"))
            child = subprocess.Popen(
                [sys.executable, "-m", "core", "worker"],
                cwd=REPOSITORY,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_stop, child)
            children.append(child)
        yield children


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _front_end(store_url: str | None, cache: Path):
    from core.catalogue import Catalogue
    from core.jobs import JobQueue, open_store
    from core.pool import ModelPool
    from core.runner import Studio
    from core.store import ResultStore

    studio = Studio(Catalogue.load(None), ModelPool(1), ResultStore(cache / "results", 1 << 30))
    return JobQueue(
        studio, open_store(store_url, cache), workers=0, max_queue=256, max_per_session=256, lease_s=LEASE_S
    )


def _until(condition, timeout: float = 300.0, poll: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise RuntimeError("timed out")


def throughput_figure(workspace: Workspace, store_url: str | None, label: str) -> Figure:
    jobs, repeats = (8, 2) if workspace.options.quick else (16, 3)
    ratios, details = [], []
    seeds = iter(range(10**6))
    for repeat in range(repeats):
        seconds = {}
        for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
            cache = workspace.scratch(f"throughput-{label}-{repeat}-{workers}")
            environ = workspace.environment(
                STUDIO_CACHE_DIR=str(cache), STUDIO_LEASE_S=str(LEASE_S), OMP_NUM_THREADS="1"
            )
            if store_url:
                environ["STUDIO_QUEUE_URL"] = store_url
                _flush(store_url)
            front = _front_end(store_url, cache)
            with worker_processes(workers, environ, cache):
                _until(lambda front=front, workers=workers: front.workers_alive() == workers, timeout=120, poll=0.1)
                requests = [removal(900, 300, next(seeds), whole_image=True) for _ in range(jobs)]
                started = time.perf_counter()
                ids = [front.submit(request, session=f"client-{index % 4}") for index, request in enumerate(requests)]
                for job in ids:
                    assert front.wait(job, timeout=600).state.value == "done"
                seconds[workers] = time.perf_counter() - started
                used = {front.status(job).worker for job in ids}
            front.shutdown()
            front.store.close()
            details.append({"workers": workers, "seconds": seconds[workers], "workers_used": len(used)})
        ratios.append(seconds[1] / seconds[2])
    return Figure(
        figure=f"throughput, 2 worker processes / 1 ({label})",
        case=f"{jobs} OpenCV removals, 900 px, whole image",
        value=Spread.of(ratios),
        unit="x",
        target=Target.at_least(1.7),
        details={"runs": details, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0]},
    )


def recovery_figure(workspace: Workspace, store_url: str | None, label: str) -> Figure:
    repeats = workspace.repeats(3, 2)
    seconds, seeds = [], iter(range(10**6))
    for repeat in range(repeats):
        cache = workspace.scratch(f"recovery-{label}-{repeat}")
        environ = workspace.environment(STUDIO_CACHE_DIR=str(cache), STUDIO_LEASE_S=str(LEASE_S), OMP_NUM_THREADS="1")
        if store_url:
            environ["STUDIO_QUEUE_URL"] = store_url
            _flush(store_url)
        front = _front_end(store_url, cache)
        with worker_processes(2, environ, cache) as children:
            _until(lambda front=front: front.workers_alive() == 2, timeout=120, poll=0.1)
            seconds.append(_recover_once(front, children, next(seeds)))
        front.shutdown()
        front.store.close()
    return Figure(
        figure=f"recovery after kill -9 of a worker ({label})",
        case=f"lease {LEASE_S:g} s; kill -> the job running on the other worker",
        value=Spread.of(seconds),
        unit="s",
        target=Target.at_most(LEASE_S + 1.0),
    )


def _recover_once(front, children: list[subprocess.Popen], seed: int) -> float:
    job = front.submit(removal(1500, 500, seed, whole_image=True), session="bench")
    first = _until(lambda: (status := front.status(job)).state.value == "running" and status)
    victim = next(child for child in children if first.worker.endswith(f":{child.pid}"))
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.perf_counter()
    _until(lambda: (status := front.status(job)).attempts == 2 and status.state.value == "running", poll=0.005)
    recovered = time.perf_counter() - killed
    assert front.wait(job, timeout=600).state.value == "done"
    return recovered


def _flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def run(workspace: Workspace) -> Outcome:
    from tests.redis_server import redis_server

    with redis_server(workspace.scratch("redis")) as redis_url:
        figures = overhead_figures(workspace, redis_url)
        figures.append(throughput_figure(workspace, None, "sqlite"))
        figures.append(throughput_figure(workspace, redis_url, "redis"))
        figures.append(recovery_figure(workspace, None, "sqlite"))
        figures.append(recovery_figure(workspace, redis_url, "redis"))
    notes = {"what": __doc__.strip().splitlines()[0], "host": socket.gethostname()}
    return Outcome(figures, notes)


__all__ = ["run"]


if __name__ == "__main__":  # a contender process of `overhead_figures`
    serve(*sys.argv[1:4])
