"""Helpers shared by the job tests: a spy around the real engines, requests, and waiting."""

from __future__ import annotations

import threading
import time
from collections import Counter

from core.engines import load_engine
from core.requests import GenerateRequest

SIZE = 64  # tiny-sd at 64 px: a few milliseconds per step


class EngineSpy:
    """Wraps each real engine the pool loads: counts runs and preview renders, records the steps
    passed to the queue's reporter, and holds runs at the gate while it is closed."""

    def __init__(self, fail_with: BaseException | None = None):
        self.runs: Counter[int] = Counter()  # by seed
        self.steps: dict[int, list[int]] = {}  # seed -> steps passed to the queue's reporter
        self.renders = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail_with = fail_with  # raised by the engine instead of running (e.g. MemoryError)
        self._lock = threading.Lock()

    def loader(self, spec):
        return _SpiedEngine(load_engine(spec), self)

    def wrap(self, report, seed: int):
        def spied(step, total, preview=None):
            if not self.gate.wait(timeout=30):
                raise AssertionError("the test never opened the gate")
            with self._lock:
                self.steps.setdefault(seed, []).append(step)
            report(step, total, self._counted(preview) if preview is not None else None)

        return spied

    def _counted(self, preview):
        def render():
            with self._lock:
                self.renders += 1
            return preview()

        return render


class _SpiedEngine:
    def __init__(self, engine, spy: EngineSpy):
        self.engine, self.spy, self.spec = engine, spy, engine.spec

    def text_to_image(self, request, report):
        self.spy.runs[request.seed] += 1
        if self.spy.fail_with is not None:
            raise self.spy.fail_with
        return self.engine.text_to_image(request, self.spy.wrap(report, request.seed))

    def inpaint(self, image, mask, request, report):
        self.spy.runs[request.seed] += 1
        return self.engine.inpaint(image, mask, request, self.spy.wrap(report, request.seed))

    def close(self):
        self.engine.close()


def generate(seed: int, steps: int = 2, **changes) -> GenerateRequest:
    values = {"model": "tiny-sd", "prompt": "a lighthouse at dusk", "width": SIZE, "height": SIZE}
    values.update(num_inference_steps=steps, seed=seed, **changes)
    return GenerateRequest(**values)


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")
