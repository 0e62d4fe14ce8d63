"""Metrics collectors (in-memory, Prometheus, OpenTelemetry), the fan-out with its cardinality
guard, and the runtime instrumentation that feeds them."""

from host.metrics.guard import GuardedMetrics
from host.metrics.memory import InMemoryMetrics, Series

__all__ = ["GuardedMetrics", "InMemoryMetrics", "Series"]
