"""`MemoryExporter`: the in-memory series in Prometheus format, read at scrape time.

prometheus-client is imported at the first scrape (or when its own port is served), not when
the host starts: ``/metrics`` is on by default, but a start-up does not need the library
(about 25 ms of imports; see docs/benchmarks.md, start-up).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from host.metrics.catalog import exposition_name, help_text, prometheus_name
from host.metrics.memory import DEFAULT_BUCKETS, InMemoryMetrics, Series

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

__all__ = ["CONTENT_TYPE", "MemoryExporter"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MemoryExporter:
    """A prometheus-client collector reading the in-memory collector at scrape time.

    The host records each observation once, in memory (``agenthost stats`` reads it there);
    ``/metrics`` translates the series when scraped. Recording into prometheus-client as well
    would double the cost of every observation on the hot path for a view read every 15 s.
    """

    def __init__(self, memory: InMemoryMetrics) -> None:
        self.memory = memory
        self._registry: CollectorRegistry | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """The prometheus-client registry this collector is registered in (made at first use)."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            registry.register(self)
            self._registry = registry
        return self._registry

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

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
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
