"""`Telemetry`: the host's metrics pipeline built from the ``metrics`` config section.

One guarded collector (the METRICS service) fans out to the in-memory collector, which always
runs because ``agenthost stats`` and tests read it, and to the configured exporters. The sampler
feeds it the stats other components keep (cache, pools) before every read and on a timer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contracts.metrics import MetricsCollector, MetricsSettings, Tags
from host import tracing
from host.metrics.bound import bind
from host.metrics.exposition import MemoryExporter
from host.metrics.guard import GuardedMetrics
from host.metrics.memory import InMemoryMetrics, Kind, Recorder, Series
from host.metrics.sampler import Sampler

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = ["FanOut", "Telemetry", "build_telemetry", "series_json"]


@dataclass(slots=True)
class Telemetry:
    """The collectors of one host and what reads them."""

    settings: MetricsSettings
    collector: GuardedMetrics
    """What plugins record through (the METRICS service): guarded against user-data tags."""
    memory: InMemoryMetrics
    sampler: Sampler
    prometheus: MemoryExporter | None = None
    """Serves the in-memory series in Prometheus format when the exporter is configured."""
    otel: Any = None
    """An `OTelMetrics` when the ``otel`` exporter is configured (needs the ``otel`` extra)."""
    server: WSGIServer | None = None
    """The ``/metrics`` server on ``metrics.prometheus_port`` while it runs."""

    @property
    def internal(self) -> MetricsCollector:
        """What the host's own instrumentation records through: its tags are bounded by
        construction (model types, providers, actions, stages), so it skips the guard; this is
        on every message's path."""
        if self.otel is None:
            return self.memory
        return FanOut((self.memory, self.otel))

    def start(self) -> None:
        """Start the periodic sampler (and the Prometheus port when configured)."""
        self.sampler.start(self.settings.sample_interval)
        port = self.settings.prometheus_port
        if self.prometheus is not None and port is not None and self.server is None:
            from prometheus_client import start_http_server

            self.server, _thread = start_http_server(port, "127.0.0.1", self.prometheus.registry)

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` is served on by its own server (0 in config: any free one)."""
        return None if self.server is None else int(self.server.server_address[1])

    async def aclose(self) -> None:
        await self.sampler.stop()
        self.sampler.sample()
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.to_thread(server.shutdown)  # the port is free again (stop, restart)
            server.server_close()
        if self.otel is not None:
            self.otel.shutdown()
            tracing.shutdown()

    def exposition(self) -> bytes:
        """Current figures in Prometheus text format (sampled first)."""
        if self.prometheus is None:
            raise LookupError("the prometheus exporter is not enabled (metrics.exporters)")
        self.sampler.sample()
        return self.prometheus.exposition()

    def snapshot(self) -> list[dict[str, Any]]:
        """Current figures of every series as JSON-ready dicts (sampled first)."""
        self.sampler.sample()
        return [series_json(series) for series in self.memory.series()]


class FanOut:
    """Records into several collectors (no guard: for the host's own, vetted tags)."""

    def __init__(self, collectors: tuple[MetricsCollector, ...]) -> None:
        self.collectors = collectors

    def increment_counter(self, name: str, value: float = 1, tags: Tags | None = None) -> None:
        for collector in self.collectors:
            collector.increment_counter(name, value, tags)

    def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        for collector in self.collectors:
            collector.record_histogram(name, value, tags)

    def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        for collector in self.collectors:
            collector.record_gauge(name, value, tags)

    def bind(self, kind: Kind, name: str, tags: Tags | None = None) -> Recorder:
        """One recorder writing the series into every collector."""
        recorders = tuple(bind(collector, kind, name, tags) for collector in self.collectors)

        def record(value: float) -> None:
            for recorder in recorders:
                recorder(value)

        return record


def series_json(series: Series) -> dict[str, Any]:
    """One series as the ``/stats`` route serves it."""
    out: dict[str, Any] = {"name": series.name, "kind": series.kind, "tags": series.tags}
    if series.kind == "histogram":
        out |= {
            "count": series.count,
            "sum": series.value,
            "mean": series.mean,
            "p50": series.quantile(0.5),
            "p95": series.quantile(0.95),
            "max": series.max if series.count else 0.0,
        }
    else:
        out["value"] = series.value
    return out


def build_telemetry(settings: MetricsSettings | None = None) -> Telemetry:
    """The collectors `settings` asks for, behind the cardinality guard."""
    settings = settings or MetricsSettings()
    memory = InMemoryMetrics()
    collectors: list[MetricsCollector] = [memory]
    prometheus = otel = None
    if "prometheus" in settings.exporters:
        prometheus = MemoryExporter(memory)
    if "otel" in settings.exporters:
        from host.metrics.otel import OTelMetrics, otlp_reader

        if settings.otlp_endpoint is None:
            raise ValueError("metrics.exporters lists 'otel' but metrics.otlp_endpoint is not set")
        otel = OTelMetrics([otlp_reader(settings.otlp_endpoint, settings.otlp_interval)])
        tracing.use_otlp(settings.otlp_endpoint)  # spans to the same collector
        collectors.append(otel)
    collector = GuardedMetrics(collectors, max_series=settings.max_series)
    return Telemetry(settings, collector, memory, Sampler(collector), prometheus, otel)
