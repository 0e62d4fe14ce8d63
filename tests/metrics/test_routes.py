"""``/metrics`` and ``/stats`` served by a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from contracts.metrics import MetricsSettings
from host.http import HttpServer
from host.metrics.routes import metrics_router
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
    app.include_router(metrics_router(telemetry))
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
    duration = families["gen_ai_client_operation_duration"]
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
    app.include_router(metrics_router(telemetry))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 404
    assert "metrics.exporters" in response.json()["detail"]


def test_otel_without_endpoint_is_a_config_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="otlp_endpoint"):
        build_telemetry(MetricsSettings(exporters=("memory", "otel")))
