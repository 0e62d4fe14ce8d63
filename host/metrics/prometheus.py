"""Prometheus exporter: translates collector calls into prometheus-client metrics.

Each metric gets its label names from its first use; a later call missing a label fills it with
"" and extra labels are dropped with a warning, because a Prometheus metric's labels are fixed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from contracts.metrics import Tags
from host.metrics.catalog import exposition_name, help_text, prometheus_name
from host.metrics.memory import DEFAULT_BUCKETS, InMemoryMetrics, Series

__all__ = ["CONTENT_TYPE", "MemoryExporter", "PrometheusMetrics", "prometheus_name"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


class MemoryExporter:
    """A prometheus-client collector reading the in-memory collector at scrape time.

    The host records each observation once, in memory (``agenthost stats`` reads it there);
    ``/metrics`` translates the series when scraped. Recording into prometheus-client as well
    would double the cost of every observation on the hot path for a view read every 15 s.
    """

    def __init__(self, memory: InMemoryMetrics) -> None:
        self.memory = memory
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[Series]] = {}
        for series in self.memory.series():
            by_name.setdefault(series.name, []).append(series)
        for name, group in by_name.items():
            labels = sorted({key for s in group for key in s.tags})
            prom, doc = exposition_name(name), help_text(name)
            kind = group[0].kind
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(prom, doc, labels=[prometheus_name(k) for k in labels])
            elif kind == "gauge":
                family = GaugeMetricFamily(prom, doc, labels=[prometheus_name(k) for k in labels])
            else:
                family = HistogramMetricFamily(
                    prom, doc, labels=[prometheus_name(k) for k in labels]
                )
            for series in group:
                values = [series.tags.get(k, "") for k in labels]
                if isinstance(family, HistogramMetricFamily):
                    running = 0
                    buckets: list[tuple[str, float]] = []
                    for bound, count in zip(DEFAULT_BUCKETS, series.buckets, strict=False):
                        running += count
                        buckets.append((repr(float(bound)), running))
                    buckets.append(("+Inf", series.count))
                    family.add_metric(values, buckets, series.value)
                else:
                    family.add_metric(values, series.value)
            yield family

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
