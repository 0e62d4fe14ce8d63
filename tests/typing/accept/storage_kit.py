"""The store kit as a store author uses it: a wrapper that is a DatabaseAdapter, settings with
another default, the batch helpers, hooks and metric declarations from contracts."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from pydantic import Field

from contracts import AgentPayload, Manifest, MetricReading, Plugin, SearchParams, hookimpl
from contracts.storage import DatabaseAdapter, PooledStore
from host.storekit import ForwardingAdapter, IndexParams, VectorIndexSettings, check_dimension

T = TypeVar("T")


class Counting(ForwardingAdapter):
    calls = 0

    async def _forward(self, operation: str, call: Awaitable[T], size: int | None = None) -> T:
        self.calls += 1
        return await call


class Settings(VectorIndexSettings):
    hnsw_m: int = Field(default=16, ge=4)


class Store(Plugin):
    manifest = Manifest(name="store")

    @hookimpl
    async def on_agent_started(self, payload: AgentPayload) -> None: ...

    def metric_gauges(self) -> MetricReading:
        return {"store.rows": 1.0}


async def use(db: DatabaseAdapter, pooled: PooledStore) -> int:
    wrapped: DatabaseAdapter = Counting(db)
    hits = await wrapped.search_memories([1.0], None, SearchParams(k=3, index_type="ivf"))
    params: IndexParams = Settings().index_params()
    async with pooled.with_connection() as conn:
        del conn
    base: DatabaseAdapter = pooled
    del base, params
    return check_dimension("messages", None, len(hits))
