"""`bind`: one metric series resolved once, recorded into many times (the host's hot path).

The host's instrumentation records the same few series on every message (a stage's duration,
a provider's model calls). Looking a series up by name and tags costs more than recording the
value, so it resolves each series once: collectors that can (`InMemoryMetrics`, `FanOut`,
`OTelMetrics`) hand back a recorder bound to it; any other collector gets a closure calling its
ordinary method.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.metrics import MetricsCollector, Tags
from host.metrics.memory import Kind, Recorder

__all__ = ["Binder", "Recorder", "bind"]


@runtime_checkable
class Binder(Protocol):
    """A collector that can bind a series itself."""

    def bind(self, kind: Kind, name: str, tags: Tags | None = None) -> Recorder: ...


def bind(collector: MetricsCollector, kind: Kind, name: str, tags: Tags | None = None) -> Recorder:
    """A recorder of `kind` ("counter": adds, "histogram": observes, "gauge": sets) for the
    series `name` with `tags` in `collector`."""
    if isinstance(collector, Binder):
        return collector.bind(kind, name, tags)
    frozen = dict(tags) if tags else None
    method = {
        "counter": collector.increment_counter,
        "histogram": collector.record_histogram,
        "gauge": collector.record_gauge,
    }[kind]

    def record(value: float) -> None:
        method(name, value, frozen)

    return record
