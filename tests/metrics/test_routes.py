"""``/metrics`` and ``/stats`` served by a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from contracts.metrics import MetricsSettings
from host.http import HttpServer
from host.metrics.routes import router
from host.metrics.telemetry import build_telemetry


async def test_prometheus_parser_reads_back_names_and_labels() -> None:
    telemetry = build_telemetry(MetricsSettings(exporters=("memory", "prometheus")))
    metrics = telemetry.collector
    tags = {"gen_ai.operation.name": "chat", "gen_ai.system": "eliza"}
    metrics.record_histogram("gen_ai.client.operation.duration", 0.02, tags)
    metrics.record_histogram("gen_ai.client.operation.duration", 0.04, tags)
    metrics.increment_counter("agenthost.messages.processed", 3, {"agent": "eliza"})
    metrics.increment_counter("agenthost.messages.processed", 1, {"room_id": "secret-room"})
    telemetry.sampler.add("host", lambda: {"agenthost.cache.entries": 7.0})

    app = FastAPI()
    app.state.telemetry = telemetry
    app.include_router(router)
    server = HttpServer(app, port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.get("/metrics")
            stats = (await client.get("/stats", params={"name": "gen_ai"})).json()
    finally:
        await server.stop()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    duration = families["gen_ai_client_operation_duration_seconds"]
    count = [s for s in duration.samples if s.name.endswith("_count")]
    assert count[0].value == 2
    assert count[0].labels == {"gen_ai_operation_name": "chat", "gen_ai_system": "eliza"}
    processed = families["agenthost_messages_processed"]
    values = {
        tuple(s.labels.items()): s.value for s in processed.samples if s.name.endswith("_total")
    }
    # the room id was stripped by the guard: both increments land on label-free / agent series
    assert sum(values.values()) == 4
    assert all("secret-room" not in str(labels) for labels in values)
    assert families["agenthost_cache_entries"].samples[0].value == 7.0

    assert [s["name"] for s in stats] == ["gen_ai.client.operation.duration"]
    assert stats[0]["count"] == 2 and abs(stats[0]["sum"] - 0.06) < 1e-9


async def test_metrics_route_is_404_without_the_prometheus_exporter() -> None:
    telemetry = build_telemetry(MetricsSettings(exporters=("memory",)))
    app = FastAPI()
    app.state.telemetry = telemetry
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 404
    assert "metrics.exporters" in response.json()["detail"]


def test_otel_without_endpoint_is_a_config_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="otlp_endpoint"):
        build_telemetry(MetricsSettings(exporters=("memory", "otel")))


async def test_prometheus_on_its_own_port_serves_and_frees_the_port_on_close() -> None:
    settings = MetricsSettings(exporters=("memory", "prometheus"), prometheus_port=0)
    telemetry = build_telemetry(settings)
    telemetry.start()
    port = telemetry.port
    assert port
    telemetry.collector.increment_counter("agenthost.messages.processed", tags={"agent_id": "a"})
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sample = families["agenthost_messages_processed"].samples[0]
    assert (sample.labels, sample.value) == ({"agent_id": "a"}, 1)
    await telemetry.aclose()
    assert telemetry.port is None
    again = build_telemetry(
        MetricsSettings(exporters=("memory", "prometheus"), prometheus_port=port)
    )
    again.start()  # the same port binds again: the first server let it go
    assert again.port == port
    await again.aclose()


async def test_the_host_records_into_memory_and_otel_at_once() -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from contracts.events import MODEL_USED, ModelUsedPayload
    from host.events import EventBus
    from host.metrics.events import EventMetrics
    from host.metrics.otel import OTelMetrics

    telemetry = build_telemetry(MetricsSettings(exporters=("memory", "prometheus")))
    reader = InMemoryMetricReader()
    telemetry.otel = OTelMetrics([reader])  # what the otel exporter adds, read in memory
    bus = EventBus()
    EventMetrics(telemetry.internal).subscribe(bus)
    used = ModelUsedPayload(
        model_type="text_large", provider="eliza", duration=0.02, input_tokens=3, output_tokens=4
    )
    await bus.emit(MODEL_USED, used)
    await bus.emit(MODEL_USED, used)
    tags = {"gen_ai.operation.name": "chat", "gen_ai.system": "eliza"}
    in_memory = telemetry.memory.get(
        "gen_ai.client.operation.duration", **tags, **{"agenthost.model.type": "text_large"}
    )
    assert in_memory is not None and in_memory.count == 2
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        (metric.name, frozenset((point.attributes or {}).items())): point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }
    attributes = {**tags, "agenthost.model.type": "text_large"}
    duration = points[("gen_ai.client.operation.duration", frozenset(attributes.items()))]
    assert duration.count == 2  # type: ignore[union-attr]
    output = {**attributes, "gen_ai.token.type": "output"}
    assert points[("gen_ai.client.token.usage", frozenset(output.items()))].sum == 8  # type: ignore[union-attr]
    telemetry.otel.shutdown()
