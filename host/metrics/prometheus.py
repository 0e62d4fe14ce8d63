"""Prometheus exporter: translates collector calls into prometheus-client metrics.

Each metric gets its label names from its first use; a later call missing a label fills it with
"" and extra labels are dropped with a warning, because a Prometheus metric's labels are fixed.
"""

from __future__ import annotations

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
from host.metrics.catalog import exposition_name, help_text, prometheus_name
from host.metrics.exposition import CONTENT_TYPE, MemoryExporter
from host.metrics.memory import DEFAULT_BUCKETS

__all__ = ["CONTENT_TYPE", "MemoryExporter", "PrometheusMetrics", "prometheus_name"]


class PrometheusMetrics:
    """A MetricsCollector backed by its own prometheus-client registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, tuple[Any, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        """Labelled children by (name, tags as given): ``labels()`` costs a lock and a lookup."""

    def _metric(self, kind: type[Any], name: str, tags: Tags | None) -> Any:
        given = (name, tuple(tags.items()) if tags else ())
        child = self._children.get(given)
        if child is None:
            child = self._children[given] = self._labelled(kind, name, tags)
        return child

    def _labelled(self, kind: type[Any], name: str, tags: Tags | None) -> Any:
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
                        exposition_name(name),
                        help_text(name),
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
