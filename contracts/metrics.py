"""Metrics: the collector protocol plugins and the engine record through, and its token.

Names follow OpenTelemetry conventions (dotted, e.g. ``gen_ai.client.operation.duration``);
exporters translate them (Prometheus: ``gen_ai_client_operation_duration``). Tags are for bounded
sets of values (model type, provider, action name, outcome): never ids or text from user data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from contracts.tokens import Token

__all__ = ["METRICS", "MetricsCollector", "Tags"]

Tags = Mapping[str, str]


@runtime_checkable
class MetricsCollector(Protocol):
    """Records counters (monotonic sums), histograms (distributions) and gauges (last values)."""

    def increment_counter(self, name: str, value: float = 1, tags: Tags | None = None) -> None:
        """Add `value` (>= 0) to the counter `name` for this tag set."""
        ...

    def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Record one observation (a duration in seconds, a token count, a size)."""
        ...

    def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Set the current value (pool size, connections in use, cache entries)."""
        ...


METRICS: Token[MetricsCollector] = Token("metrics", MetricsCollector)
