"""OpenTelemetry exporter (the ``otel`` extra): collector calls become OTel instruments.

Readers decide where data goes: an OTLP exporter from config, or an in-memory reader in tests.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial
from typing import Any

from contracts.metrics import Tags
from host.metrics.memory import Kind, Recorder

__all__ = ["OTelMetrics", "otlp_reader"]

_RECORD_METHODS = {"counter": "add", "histogram": "record", "gauge": "set"}
"""The OTel instrument method that records a value, by collector kind."""


def otlp_reader(endpoint: str, interval_seconds: float = 10.0) -> Any:
    """A periodic reader exporting OTLP over HTTP to `endpoint` (e.g. http://127.0.0.1:4318)."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = OTLPMetricExporter(endpoint=endpoint.rstrip("/") + "/v1/metrics")
    return PeriodicExportingMetricReader(
        exporter, export_interval_millis=int(interval_seconds * 1000)
    )


class OTelMetrics:
    """A MetricsCollector on an OpenTelemetry SDK MeterProvider of its own."""

    def __init__(self, readers: Sequence[Any], *, service_name: str = "agenthost") -> None:
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import Resource
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError(
                "the OpenTelemetry exporter needs the 'otel' extra: pip install 'agenthost[otel]'"
            ) from exc
        self.provider = MeterProvider(
            metric_readers=list(readers),
            resource=Resource.create({"service.name": service_name}),
        )
        self._meter = self.provider.get_meter("agenthost")
        self._instruments: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _instrument(self, kind: str, name: str) -> Any:
        found = self._instruments.get((kind, name))
        if found is None:
            with self._lock:
                found = self._instruments.get((kind, name))
                if found is None:
                    create: Any = {
                        "counter": self._meter.create_counter,
                        "histogram": self._meter.create_histogram,
                        "gauge": self._meter.create_gauge,
                    }[kind]
                    found = self._instruments[(kind, name)] = create(name)
        return found

    def increment_counter(self, name: str, value: float = 1, tags: Tags | None = None) -> None:
        self._instrument("counter", name).add(value, attributes=dict(tags) if tags else None)

    def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        self._instrument("histogram", name).record(value, attributes=dict(tags) if tags else None)

    def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        self._instrument("gauge", name).set(value, attributes=dict(tags) if tags else None)

    def bind(self, kind: Kind, name: str, tags: Tags | None = None) -> Recorder:
        """The instrument's own record call with the attributes fixed."""
        instrument = self._instrument(kind, name)
        method = getattr(instrument, _RECORD_METHODS[kind])
        recorder: Recorder = partial(method, attributes=dict(tags) if tags else None)
        return recorder

    def shutdown(self) -> None:
        self.provider.shutdown()
