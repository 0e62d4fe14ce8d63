"""Prometheus exporter: translates collector calls into prometheus-client metrics.

Each metric gets its label names from its first use; a later call missing a label fills it with
"" and extra labels are dropped with a warning, because a Prometheus metric's labels are fixed.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from loguru import logger
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from contracts.metrics import Tags
from host.metrics.memory import DEFAULT_BUCKETS

__all__ = ["CONTENT_TYPE", "PrometheusMetrics", "prometheus_name"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def prometheus_name(name: str) -> str:
    """``gen_ai.client.operation.duration`` -> ``gen_ai_client_operation_duration``."""
    cleaned = _INVALID.sub("_", name)
    return cleaned if not cleaned[:1].isdigit() else f"_{cleaned}"


class PrometheusMetrics:
    """A MetricsCollector backed by its own prometheus-client registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, tuple[Any, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()

    def _metric(self, kind: type[Any], name: str, tags: Tags | None) -> Any:
        found = self._metrics.get(name)
        if found is None:
            with self._lock:
                found = self._metrics.get(name)
                if found is None:
                    labels = tuple(sorted(tags)) if tags else ()
                    extra: dict[str, Any] = (
                        {"buckets": DEFAULT_BUCKETS} if kind is Histogram else {}
                    )
                    metric = kind(
                        prometheus_name(name),
                        name,
                        labelnames=[prometheus_name(label) for label in labels],
                        registry=self.registry,
                        **extra,
                    )
                    found = self._metrics[name] = (metric, labels)
        metric, labels = found
        if not labels:
            return metric
        tags = tags or {}
        for tag in tags:
            if tag not in labels and (name, tag) not in self._warned:
                self._warned.add((name, tag))
                logger.warning("prometheus metric {} has no label {!r}; dropped", name, tag)
        return metric.labels(*(tags.get(label, "") for label in labels))

    def increment_counter(self, name: str, value: float = 1, tags: Tags | None = None) -> None:
        self._metric(Counter, name, tags).inc(value)

    def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        self._metric(Histogram, name, tags).observe(value)

    def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        self._metric(Gauge, name, tags).set(value)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on its own port in a daemon thread (besides the HTTP API's route)."""
        start_http_server(port, addr=host, registry=self.registry)
