"""`InstrumentedAdapter`: a `DatabaseAdapter` that times every call of the store it wraps.

The host wraps whatever adapter the DATABASE token resolves to, so every backend (and any
third-party one) is measured the same way without its author doing anything. Each call records
one observation of ``agenthost.memory.operation.duration`` tagged with the operation, the
backend and the outcome (``ok`` / the error class name); batch calls also record their size.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from contracts.metrics import MetricsCollector
from contracts.storage import DatabaseAdapter
from host.forwarding import ForwardingAdapter
from host.metrics.bound import Recorder, bind

__all__ = ["BATCH_SIZE", "OPERATION_DURATION", "InstrumentedAdapter"]

OPERATION_DURATION = "agenthost.memory.operation.duration"
BATCH_SIZE = "agenthost.memory.batch.size"

T = TypeVar("T")


class InstrumentedAdapter(ForwardingAdapter):
    """Delegates to `inner`, recording the duration and outcome of each call in `metrics`."""

    def __init__(self, inner: DatabaseAdapter, metrics: MetricsCollector) -> None:
        super().__init__(inner)
        self.metrics = metrics
        self._bound: dict[tuple[str, str, str], Recorder] = {}
        self._ok: dict[str, Recorder] = {}
        """The duration series of each operation's successes: the hot path, one lookup."""

    def _recorder(self, name: str, operation: str, outcome: str) -> Recorder:
        """The series of (`name`, `operation`, `outcome`), bound on first use."""
        found = self._bound.get((name, operation, outcome))
        if found is None:
            tags = {"operation": operation, "backend": self.backend}
            if name == OPERATION_DURATION:
                tags["outcome"] = outcome
            found = self._bound[(name, operation, outcome)] = bind(
                self.metrics, "histogram", name, tags
            )
        return found

    async def _forward(self, operation: str, call: Awaitable[T], size: int | None = None) -> T:
        """Every forwarded call, timed (`ForwardingAdapter`)."""
        started = time.perf_counter()
        try:
            result = await call
        except BaseException as exc:
            elapsed = time.perf_counter() - started
            self._recorder(OPERATION_DURATION, operation, type(exc).__name__)(elapsed)
            raise
        elapsed = time.perf_counter() - started
        record = self._ok.get(operation)
        if record is None:
            record = self._ok[operation] = self._recorder(OPERATION_DURATION, operation, "ok")
        record(elapsed)
        if size is not None:
            self._recorder(BATCH_SIZE, operation, "")(size)
        return result
