"""The sampler turns cumulative stats into counters (by growth) and current values into gauges."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from contracts.agent import CachePolicy
from contracts.cache import CacheContext
from contracts.config import CacheSettings
from host.cache import ProviderCache
from host.metrics import InMemoryMetrics
from host.metrics.sampler import Sampler, cache_source, pool_source


async def test_cache_hits_and_misses_become_counters() -> None:
    cache = ProviderCache(CacheSettings(max_entries=10))
    cache.register("time", CachePolicy(ttl=60))
    metrics = InMemoryMetrics()
    sampler = Sampler(metrics)
    counters, gauges = cache_source(cache)
    sampler.add("host", counters, kind="counter")
    sampler.add("host", gauges)

    async def compute() -> str:
        return "noon"

    room = CacheContext(agent_id="a", room_id="r")
    for _ in range(3):
        await cache.get_or_compute("time", room, compute)
    sampler.sample()
    sampler.sample()  # nothing happened in between: no growth counted twice
    assert metrics.total("agenthost.cache.misses") == 1
    assert metrics.total("agenthost.cache.hits") == 2
    entries = metrics.get("agenthost.cache.entries")
    assert entries is not None and entries.value == 1


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=30))
def test_counter_total_is_the_last_cumulative_value(steps: list[int]) -> None:
    """Whatever the sampling points, the counter ends at the source's cumulative value."""
    metrics = InMemoryMetrics()
    sampler = Sampler(metrics)
    value = 0.0
    sampler.add("src", lambda: {"c": value}, kind="counter")
    for step in steps:
        value += step
        sampler.sample()
    assert metrics.total("c") == sum(steps)


def test_a_failing_source_is_skipped_and_removal_stops_sampling() -> None:
    metrics = InMemoryMetrics()
    sampler = Sampler(metrics)

    def broken() -> dict[str, float]:
        raise RuntimeError("gone")

    sampler.add("bad", broken)
    sampler.add("good", lambda: {"g": 5.0})
    sampler.sample()
    gauge = metrics.get("g")
    assert gauge is not None and gauge.value == 5.0
    sampler.remove("good")
    sampler.add("good2", lambda: {"g": 7.0}, tags={"k": "v"})
    sampler.sample()
    assert gauge.value == 5.0


def test_pool_source_reads_psycopg_pool_stats() -> None:
    class Pool:
        def get_stats(self) -> dict[str, int]:
            return {"pool_size": 4, "pool_available": 1, "requests_waiting": 2, "pool_max": 8}

    reading = pool_source(Pool())()
    assert reading["db.client.connection.used"] == 3
    assert reading["db.client.connection.pending_requests"] == 2
    assert reading["db.client.connection.max"] == 8


async def test_background_sampling_runs_until_stopped() -> None:
    metrics = InMemoryMetrics()
    sampler = Sampler(metrics)
    calls = 0

    def read() -> dict[str, float]:
        nonlocal calls
        calls += 1
        return {"ticks": float(calls)}

    sampler.add("host", read)
    sampler.start(0.01)
    await asyncio.sleep(0.1)
    await sampler.stop()
    seen = calls
    assert seen >= 2
    await asyncio.sleep(0.05)
    assert calls == seen


async def test_bus_emits_are_counted_per_event() -> None:
    from uuid import uuid4

    from contracts.events import AGENT_STARTED, AgentPayload
    from host.events import EventBus
    from host.metrics.events import EVENTS_EMITTED
    from host.metrics.sampler import bus_source

    bus = EventBus()
    metrics = InMemoryMetrics()
    sampler = Sampler(metrics)
    sampler.add("host", bus_source(bus), kind="counter")
    for _ in range(3):
        await bus.emit(AGENT_STARTED, AgentPayload(agent_id=uuid4(), name="a"))
    sampler.sample()
    sampler.sample()
    assert metrics.total(EVENTS_EMITTED, event="agent:started") == 3
