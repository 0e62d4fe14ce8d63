"""Bound recorders record exactly what the collector methods record, in every collector."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from host.metrics import InMemoryMetrics
from host.metrics.bound import bind
from host.metrics.memory import FOLD_AT
from host.metrics.otel import OTelMetrics
from host.metrics.prometheus import PrometheusMetrics
from host.metrics.telemetry import FanOut

TAGS = {"stage": "model"}

values = st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), max_size=50)


@given(values)
def test_a_bound_histogram_equals_record_histogram(observations: list[float]) -> None:
    by_method, by_recorder = InMemoryMetrics(), InMemoryMetrics()
    record = bind(by_recorder, "histogram", "d", TAGS)
    for value in observations:
        by_method.record_histogram("d", value, TAGS)
        record(value)
    if not observations:
        assert by_method.get("d", **TAGS) is None
        assert by_recorder.get("d", **TAGS) is not None  # bound: the series exists, empty
        return
    [expected], [got] = by_method.series(), by_recorder.series()
    assert got.value == pytest.approx(expected.value)  # summed in another order
    assert (got.count, got.min, got.max, got.buckets) == (
        expected.count,
        expected.min,
        expected.max,
        expected.buckets,
    )


def test_a_bound_histogram_folds_its_pending_values_on_read_and_when_many() -> None:
    metrics = InMemoryMetrics()
    record = bind(metrics, "histogram", "d")
    for _ in range(FOLD_AT + 1):
        record(0.001)
    series = metrics._series[("d", ())]
    assert len(series.pending) == 1  # FOLD_AT of them were folded without a read
    assert series.count == FOLD_AT
    read = metrics.get("d")
    assert read is series and not series.pending and series.count == FOLD_AT + 1


def test_bound_counters_and_gauges_share_the_series_of_the_methods() -> None:
    metrics = InMemoryMetrics()
    add = bind(metrics, "counter", "c", {"agent_id": "a"})
    add(2)
    metrics.increment_counter("c", 1, {"agent_id": "a"})
    bind(metrics, "gauge", "g")(7)
    metrics.record_gauge("g", 3)
    assert metrics.get("c", agent_id="a").value == 3  # type: ignore[union-attr]
    assert metrics.get("g").value == 3  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="can only grow"):
        add(-1)
    with pytest.raises(ValueError, match="is a counter, not a histogram"):
        bind(metrics, "histogram", "c", {"agent_id": "a"})


def test_reset_zeroes_series_and_bound_recorders_keep_recording() -> None:
    metrics = InMemoryMetrics()
    record = bind(metrics, "histogram", "d")
    record(0.5)
    metrics.reset()
    series = metrics.get("d")
    assert series is not None and (series.count, series.value, sum(series.buckets)) == (0, 0, 0)
    record(0.25)
    series = metrics.get("d")
    assert series is not None and (series.count, series.min, series.max) == (1, 0.25, 0.25)


def test_fan_out_binds_into_every_collector() -> None:
    first, second = InMemoryMetrics(), InMemoryMetrics()
    record = bind(FanOut((first, second)), "histogram", "d", TAGS)
    record(1.0)
    assert first.total("d", **TAGS) == second.total("d", **TAGS) == 1


def test_a_collector_without_bind_gets_its_own_method_called() -> None:
    prom = PrometheusMetrics()
    bind(prom, "counter", "agenthost.c", {"a": "1"})(2)
    bind(prom, "gauge", "agenthost.g")(4)
    families = {f.name: f for f in text_string_to_metric_families(prom.exposition().decode())}
    assert families["agenthost_c"].samples[0].value == 2
    assert families["agenthost_c"].samples[0].labels == {"a": "1"}
    assert families["agenthost_g"].samples[0].value == 4


def test_otel_bound_instruments_export_with_their_attributes() -> None:
    reader = InMemoryMetricReader()
    otel = OTelMetrics([reader])
    bind(otel, "histogram", "gen_ai.client.token.usage", {"gen_ai.token.type": "output"})(5)
    bind(otel, "counter", "agenthost.messages.processed")(1)
    bind(otel, "gauge", "agenthost.cache.entries")(9)
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: metric.data.data_points[0]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    usage = points["gen_ai.client.token.usage"]
    assert usage.sum == 5  # type: ignore[union-attr]
    assert dict(usage.attributes or {}) == {"gen_ai.token.type": "output"}
    assert points["agenthost.messages.processed"].value == 1  # type: ignore[union-attr]
    assert points["agenthost.cache.entries"].value == 9  # type: ignore[union-attr]
    otel.shutdown()


def test_no_observation_is_lost_when_threads_record_and_read_at_once() -> None:
    import threading

    metrics = InMemoryMetrics()
    record = bind(metrics, "histogram", "d")
    add = bind(metrics, "counter", "c")
    done = threading.Event()

    def write() -> None:
        for _ in range(5_000):
            record(0.5)
            add(1)

    def read() -> None:
        while not done.is_set():
            metrics.series()

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write) for _ in range(4)]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    series = metrics.get("d")
    assert series is not None and series.count == 20_000 and series.value == 10_000
    assert sum(series.buckets) == 20_000
    assert metrics.get("c").value == 20_000  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "observations",
    [
        [0.0001, 0.00025, 65536.0, 65536.5, 0.0, 1, 7, 2**60] * (FOLD_AT // 4),  # bounds, ints
        [0.001, float("nan"), 0.5],  # a NaN: summed, bucketed as bisect puts it
        [0.001, 10**30, 3],  # a big int
        [float("inf"), 1e300, -5.0],
        [5, 3, 9, 3.0, 9.0] * (FOLD_AT // 4),  # ints stay ints as the min and max, the first wins
        [0.0, -0.0, 0, 1.5],  # equal zeros: the first is the min, as Python's min says
        [2**53, 2**53 + 1, -(2**53), -(2**53) - 1, 2.5],  # ints a float64 cannot tell apart
    ],
)
def test_a_folded_histogram_buckets_values_as_record_histogram_does(
    observations: list[float],
) -> None:
    """The fold counts a batch into buckets in one numpy pass; values on a bucket's bound, past
    the last one, ints and NaN land where one `record_histogram` each puts
    them, and its min and max (found by numpy) are the very values those calls keep."""
    by_method, by_recorder = InMemoryMetrics(), InMemoryMetrics()
    record = bind(by_recorder, "histogram", "d")
    for value in observations:
        by_method.record_histogram("d", value)
        record(value)
    [expected], [got] = by_method.series(), by_recorder.series()
    assert got.buckets == expected.buckets and got.count == expected.count == len(observations)
    assert repr((got.min, got.max)) == repr((expected.min, expected.max))  # types, zeros' signs
