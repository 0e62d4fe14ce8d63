"""Metrics: the collector protocol plugins and the engine record through, and its token.

Names follow OpenTelemetry conventions (dotted, e.g. ``gen_ai.client.operation.duration``);
exporters translate them (Prometheus: ``gen_ai_client_operation_duration``). Tags are for bounded
sets of values (model type, provider, action name, outcome): never ids or text from user data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from contracts.tokens import Token

__all__ = ["METRICS", "MetricsCollector", "MetricsSettings", "Tags"]

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


class MetricsSettings(BaseModel):
    """Config section ``metrics``: which exporters run and how cardinality is bounded."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """False: no instrumentation at all (the runtime records nothing; ``/metrics`` is empty)."""
    exporters: tuple[Literal["memory", "prometheus", "otel"], ...] = ("memory", "prometheus")
    """The in-memory collector always runs (``agenthost stats`` reads it); list the others."""
    prometheus_port: int | None = Field(default=None, ge=0, le=65535)
    """Also serve ``/metrics`` on this port of 127.0.0.1 (it is always on the HTTP API); 0: any
    free port."""
    otlp_endpoint: str | None = None
    """OTLP/HTTP endpoint for the ``otel`` exporter, e.g. ``http://127.0.0.1:4318``."""
    otlp_interval: float = Field(default=10.0, gt=0)
    max_series: int = Field(default=1000, ge=1)
    """Tag combinations allowed per metric; more are dropped with a warning."""
    sample_interval: float = Field(default=15.0, gt=0)
    """Seconds between samples of cache and pool stats (also sampled on every read)."""
