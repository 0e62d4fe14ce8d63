"""`Sampler`: turns the state other components already keep into metrics, when asked.

The provider cache counts its hits and a connection pool knows its size; rather than making them
call the collector on every hit, the sampler reads them when metrics are about to be read (a
``/metrics`` scrape, ``agenthost stats``) and on a timer. Cumulative sources become counters (the
sampler adds the growth since the previous sample); current values become gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from loguru import logger

from contracts.cache import ProviderCacheProtocol
from contracts.metrics import MetricsCollector, Tags

__all__ = ["Sampler", "Source", "bus_source", "cache_source", "pool_source"]

SeriesKey = str | tuple[str, tuple[tuple[str, str], ...]]
"""A metric name (tagged with the source's tags), or ``(name, ((tag, value), ...))``."""
Reading = Mapping[SeriesKey, float]
Reader = Callable[[], Reading]


@dataclass(slots=True)
class Source:
    """One thing to sample: `read` returns ``{metric name: value}``."""

    name: str
    read: Callable[[], Reading]
    kind: Literal["counter", "gauge"]
    tags: Tags | None = None
    last: dict[SeriesKey, float] = field(default_factory=dict)


class Sampler:
    """Samples registered sources into `metrics` (counters as deltas, gauges as values)."""

    def __init__(self, metrics: MetricsCollector) -> None:
        self.metrics = metrics
        self._sources: dict[str, list[Source]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(
        self,
        name: str,
        read: Callable[[], Reading],
        *,
        kind: Literal["counter", "gauge"] = "gauge",
        tags: Tags | None = None,
    ) -> None:
        """Sample `read` under the owner `name` (a plugin name or ``host``)."""
        self._sources.setdefault(name, []).append(Source(name, read, kind, tags))

    def remove(self, name: str) -> None:
        """Stop sampling everything `name` added (plugin unload and reload)."""
        self._sources.pop(name, None)

    def sample(self) -> None:
        """Read every source once; a failing source is logged and skipped."""
        for sources in list(self._sources.values()):
            for source in sources:
                try:
                    reading = dict(source.read())
                except Exception as exc:
                    logger.bind(plugin=source.name).warning(
                        "metrics source {} failed: {!r}", source.name, exc
                    )
                    continue
                for key, value in reading.items():
                    tags: Tags | None
                    if isinstance(key, tuple):
                        metric, tags = key[0], dict(key[1])
                    else:
                        metric, tags = key, source.tags
                    if source.kind == "gauge":
                        self.metrics.record_gauge(metric, value, tags)
                        continue
                    # A source that restarted (a reloaded cache) starts again from zero.
                    growth = value - source.last.get(key, 0.0)
                    if growth > 0:
                        self.metrics.increment_counter(metric, growth, tags)
                    source.last[key] = value

    def start(self, interval: float) -> None:
        """Sample every `interval` seconds in the background until `stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sample()


def cache_source(
    cache: ProviderCacheProtocol,
) -> tuple[Callable[[], Reading], Callable[[], Reading]]:
    """Readers of the provider cache: (counters, gauges)."""

    def counters() -> Reading:
        stats = cache.stats()
        return {
            "agenthost.cache.hits": stats.hits,
            "agenthost.cache.misses": stats.misses,
            "agenthost.cache.evictions": stats.evictions,
            "agenthost.cache.invalidations": stats.invalidations,
            "agenthost.cache.errors": stats.errors,
            "agenthost.cache.expirations": stats.expirations,
            "agenthost.cache.saved": stats.saved_seconds,
        }

    def gauges() -> Reading:
        stats = cache.stats()
        return {"agenthost.cache.entries": stats.entries, "agenthost.cache.size": stats.size_bytes}

    return counters, gauges


class _StatsPool(Protocol):
    def get_stats(self) -> Mapping[str, int]: ...


def pool_source(pool: _StatsPool) -> Reader:
    """Reader of a psycopg_pool pool, named after the OpenTelemetry database conventions."""

    def read() -> Reading:
        stats = pool.get_stats()
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        return {
            "db.client.connection.count": size,
            "db.client.connection.idle": idle,
            "db.client.connection.used": size - idle,
            "db.client.connection.pending_requests": stats.get("requests_waiting", 0),
            "db.client.connection.max": stats.get("pool_max", 0),
        }

    return read


class _CountingBus(Protocol):
    @property
    def counts(self) -> Mapping[str, int]: ...


def bus_source(bus: _CountingBus) -> Reader:
    """Events emitted, per event name (the bus counts them; a dict increment per emit)."""

    def read() -> Reading:
        return {
            ("agenthost.events.emitted", (("event", name),)): count
            for name, count in bus.counts.items()
        }

    return read
