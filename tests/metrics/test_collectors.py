"""Metrics collectors: in-memory queries, the cardinality guard, Prometheus and OTel exporters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loguru import logger
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from contracts.metrics import MetricsCollector
from host.metrics import GuardedMetrics, InMemoryMetrics
from host.metrics.guard import DROPPED
from host.metrics.otel import OTelMetrics
from host.metrics.prometheus import PrometheusMetrics, prometheus_name


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="WARNING", format="{message}")
    yield seen
    logger.remove(sink)


def test_every_collector_satisfies_the_protocol() -> None:
    for collector in (InMemoryMetrics(), PrometheusMetrics(), GuardedMetrics([])):
        assert isinstance(collector, MetricsCollector)


def test_in_memory_counters_gauges_and_queries() -> None:
    metrics = InMemoryMetrics()
    metrics.increment_counter("agenthost.messages.processed", tags={"agent": "eliza"})
    metrics.increment_counter("agenthost.messages.processed", 2, {"agent": "eliza"})
    metrics.increment_counter("agenthost.messages.processed", tags={"agent": "other"})
    metrics.record_gauge("db.pool.size", 4)
    metrics.record_gauge("db.pool.size", 7)
    assert metrics.get("agenthost.messages.processed", agent="eliza").value == 3  # type: ignore[union-attr]
    assert metrics.total("agenthost.messages.processed") == 4
    assert metrics.get("db.pool.size").value == 7  # type: ignore[union-attr]
    assert metrics.names() == ["agenthost.messages.processed", "db.pool.size"]
    with pytest.raises(ValueError, match="can only grow"):
        metrics.increment_counter("x", -1)
    with pytest.raises(ValueError, match="is a counter, not a gauge"):
        metrics.record_gauge("agenthost.messages.processed", 1, {"agent": "eliza"})


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=200))
def test_histogram_summary_matches_the_observations(values: list[float]) -> None:
    metrics = InMemoryMetrics()
    for value in values:
        metrics.record_histogram("d", value)
    series = metrics.get("d")
    assert series is not None
    assert series.count == len(values)
    assert series.value == pytest.approx(sum(values))
    assert (series.min, series.max) == (min(values), max(values))
    assert sum(series.buckets) == len(values)
    ordered = sorted(values)
    true_median = ordered[(len(ordered) - 1) // 2]
    assert true_median <= series.quantile(0.5) + 1e-9
    assert series.quantile(1.0) == max(values)


def test_guard_drops_user_data_tags(warnings: list[str]) -> None:
    memory = InMemoryMetrics()
    guarded = GuardedMetrics([memory])
    guarded.increment_counter(
        "agenthost.messages", tags={"agent": "eliza", "room_id": "r1", "text": "hello"}
    )
    guarded.increment_counter("agenthost.messages", tags={"agent": "eliza", "room_id": "r2"})
    series = memory.series("agenthost.messages")
    assert [s.tags for s in series] == [{"agent": "eliza"}]
    assert series[0].value == 2
    assert sum("'room_id' dropped" in w for w in warnings) == 1
    guarded.record_histogram("h", 1.0, {"action": "x" * 200})
    assert memory.get("h") is not None


def test_guard_limits_series_per_metric(warnings: list[str]) -> None:
    memory = InMemoryMetrics()
    guarded = GuardedMetrics([memory], max_series=3)
    for i in range(10):
        guarded.record_gauge("g", i, {"shard": str(i)})
    assert len(memory.series("g")) == 3
    assert memory.total(DROPPED, metric="g") == 7
    assert sum("reached 3 tag combinations" in w for w in warnings) == 1
    guarded.record_gauge("g", 42, {"shard": "1"})  # an existing series still records
    assert memory.get("g", shard="1").value == 42  # type: ignore[union-attr]


def test_guard_fans_out_to_every_collector() -> None:
    first, second = InMemoryMetrics(), InMemoryMetrics()
    guarded = GuardedMetrics([first, second])
    guarded.record_histogram("gen_ai.client.operation.duration", 0.2, {"gen_ai.provider.name": "e"})
    assert first.total("gen_ai.client.operation.duration") == 1
    assert second.total("gen_ai.client.operation.duration") == 1


def test_prometheus_exposition_parses_back() -> None:
    prom = PrometheusMetrics()
    tags = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "eliza"}
    prom.record_histogram("gen_ai.client.operation.duration", 0.05, tags)
    prom.record_histogram("gen_ai.client.operation.duration", 0.2, tags)
    prom.increment_counter(
        "agenthost.actions.executions", tags={"action": "REPLY", "success": "true"}
    )
    prom.record_gauge("db.client.connections.usage", 3, {"state": "used"})
    families = {f.name: f for f in text_string_to_metric_families(prom.exposition().decode())}
    duration = families["gen_ai_client_operation_duration_seconds"]
    assert duration.type == "histogram"
    count = next(s for s in duration.samples if s.name.endswith("_count"))
    assert count.value == 2
    assert count.labels == {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "eliza"}
    executions = families["agenthost_actions_executions"]
    assert executions.type == "counter"
    assert executions.samples[0].labels == {"action": "REPLY", "success": "true"}
    assert families["db_client_connections_usage"].samples[0].value == 3


def test_prometheus_label_mismatch_is_tolerated(warnings: list[str]) -> None:
    prom = PrometheusMetrics()
    prom.increment_counter("c", tags={"a": "1"})
    prom.increment_counter("c", tags={"a": "1", "b": "2"})
    prom.increment_counter("c")
    families = {f.name: f for f in text_string_to_metric_families(prom.exposition().decode())}
    values = {s.labels["a"]: s.value for s in families["c"].samples if s.name == "c_total"}
    assert values == {"1": 2.0, "": 1.0}
    assert any("no label 'b'" in w for w in warnings)


def test_prometheus_names() -> None:
    assert prometheus_name("gen_ai.client.token.usage") == "gen_ai_client_token_usage"
    assert prometheus_name("9lives") == "_9lives"


def test_otel_exports_to_a_reader() -> None:
    reader = InMemoryMetricReader()
    otel = OTelMetrics([reader])
    otel.record_histogram("gen_ai.client.token.usage", 12, {"gen_ai.token.type": "input"})
    otel.increment_counter("agenthost.messages.processed", 1, {"agent": "eliza"})
    otel.record_gauge("db.client.connections.usage", 2)
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    usage = metrics["gen_ai.client.token.usage"].data.data_points[0]
    assert usage.sum == 12  # type: ignore[union-attr]
    assert dict(usage.attributes or {}) == {"gen_ai.token.type": "input"}
    assert metrics["agenthost.messages.processed"].data.data_points[0].value == 1  # type: ignore[union-attr]
    otel.shutdown()
