"""Loaded models, at most N resident; the least recently used is released (memory really freed).

Memory decides too: a model that does not fit in this host's budget (`core/memory.py`) is
refused before loading, and resident models are released first, least recently used first,
until the new one fits beside the rest. A failed load leaves the previously resident model
usable: when a model had to be evicted to make room, it is loaded back (as IOPaint's
ModelManager.switch rolls back).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from core import memory, settings
from core.catalogue import ModelSpec
from core.engines import load_engine
from core.engines.base import Engine
from core.errors import ModelUnavailableError

log = logging.getLogger(__name__)


class ModelPool:
    def __init__(
        self,
        max_resident: int = settings.default("max_resident_models"),
        loader: Callable[[ModelSpec], Engine] = load_engine,
        budget: Callable[[], memory.Budget] = memory.budget,
    ):
        if max_resident < 1:
            raise ValueError("max_resident must be at least 1")
        self.max_resident = max_resident
        self._loader = loader
        self._budget = budget
        self._engines: OrderedDict[str, Engine] = OrderedDict()  # most recently used last
        self._specs: dict[str, ModelSpec] = {}
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> Engine:
        with self._lock:
            engine = self._engines.get(spec.id)
            if engine is not None and self._specs[spec.id] == spec:
                self._engines.move_to_end(spec.id)
                return engine
            if engine is not None:  # the catalogue entry changed: reload it
                self._release(spec.id)
            budget = self._budget()
            need = spec.memory_need()
            refusal = budget.refusal(need)
            if refusal is not None:
                raise ModelUnavailableError(f"{spec.name} does not fit: it {refusal}")
            evicted: list[ModelSpec] = []
            while self._engines and (len(self._engines) >= self.max_resident or budget.refusal(need + self._held()) is not None):
                evicted.append(self._specs[next(iter(self._engines))])
                self._release(evicted[-1].id)
            try:
                engine = self._loader(spec)
            except Exception:
                self._restore(evicted)
                raise
            self._engines[spec.id] = engine
            self._specs[spec.id] = spec
            return engine

    def peek(self, model_id: str) -> Engine | None:
        """The resident engine for `model_id`, or None — without waiting while a model loads (for UIs)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._engines.get(model_id)
        finally:
            self._lock.release()

    def resident(self) -> list[str]:
        with self._lock:
            return list(self._engines)

    def clear(self) -> None:
        with self._lock:
            for model_id in list(self._engines):
                self._release(model_id)

    def _held(self) -> int:
        return sum(self._specs[model_id].memory_need() for model_id in self._engines)

    def _release(self, model_id: str) -> None:
        engine = self._engines.pop(model_id)
        self._specs.pop(model_id)
        try:
            engine.close()
        except Exception:  # releasing must never take the pool down
            log.exception("closing model %s failed", model_id)

    def _restore(self, evicted: list[ModelSpec]) -> None:
        for spec in reversed(evicted):
            try:
                self._engines[spec.id] = self._loader(spec)
                self._specs[spec.id] = spec
            except Exception:
                log.exception("could not reload %s after a failed switch", spec.id)
