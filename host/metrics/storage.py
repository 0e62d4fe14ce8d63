"""`InstrumentedAdapter`: a `DatabaseAdapter` that times every call of the store it wraps.

The host wraps whatever adapter the DATABASE token resolves to, so every backend (and any
third-party one) is measured the same way without its author doing anything. Each call records
one observation of ``agenthost.memory.operation.duration`` tagged with the operation, the
backend and the outcome (``ok`` / the error class name); batch calls also record their size.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar
from uuid import UUID

from contracts.memory import Memory, MemoryQuery, MemoryUpdate
from contracts.metrics import MetricsCollector
from contracts.storage import DatabaseAdapter, IndexType, RoomSummary
from host.metrics.bound import Recorder, bind

__all__ = ["BATCH_SIZE", "OPERATION_DURATION", "InstrumentedAdapter"]

OPERATION_DURATION = "agenthost.memory.operation.duration"
BATCH_SIZE = "agenthost.memory.batch.size"

T = TypeVar("T")


class InstrumentedAdapter:
    """Delegates to `inner`, recording the duration and outcome of each call in `metrics`."""

    def __init__(self, inner: DatabaseAdapter, metrics: MetricsCollector) -> None:
        self.inner = inner
        self.metrics = metrics
        self.backend = inner.backend
        self._bound: dict[tuple[str, str, str], Recorder] = {}
        self._ok: dict[str, Recorder] = {}
        """The duration series of each operation's successes: the hot path, one lookup."""

    def _recorder(self, name: str, operation: str, outcome: str) -> Recorder:
        """The series of (`name`, `operation`, `outcome`), bound on first use."""
        found = self._bound.get((name, operation, outcome))
        if found is None:
            tags = {"operation": operation, "backend": self.backend}
            if name == OPERATION_DURATION:
                tags["outcome"] = outcome
            found = self._bound[(name, operation, outcome)] = bind(
                self.metrics, "histogram", name, tags
            )
        return found

    async def _timed(self, operation: str, call: Awaitable[T], size: int | None = None) -> T:
        started = time.perf_counter()
        try:
            result = await call
        except BaseException as exc:
            elapsed = time.perf_counter() - started
            self._recorder(OPERATION_DURATION, operation, type(exc).__name__)(elapsed)
            raise
        elapsed = time.perf_counter() - started
        record = self._ok.get(operation)
        if record is None:
            record = self._ok[operation] = self._recorder(OPERATION_DURATION, operation, "ok")
        record(elapsed)
        if size is not None:
            self._recorder(BATCH_SIZE, operation, "")(size)
        return result

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        return await self._timed("create", self.inner.create_memory(memory, table_name))

    async def reset_embeddings(self, table_name: str) -> int:
        return await self._timed("reset_embeddings", self.inner.reset_embeddings(table_name))

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        return await self._timed("get", self.inner.get_memory(memory_id))

    async def update_memory(self, update: MemoryUpdate) -> bool:
        return await self._timed("update", self.inner.update_memory(update))

    async def delete_memory(self, memory_id: UUID) -> bool:
        return await self._timed("delete", self.inner.delete_memory(memory_id))

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        return await self._timed("query", self.inner.get_memories(query))

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        return await self._timed("count", self.inner.count_memories(query))

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        return await self._timed("count", self.inner.room_summaries(query))

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        call = self.inner.create_memories_batch(memories, table_name)
        return await self._timed("create_batch", call, len(memories))

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        call = self.inner.update_memories_batch(updates)
        return await self._timed("update_batch", call, len(updates))

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        call = self.inner.delete_memories_batch(memory_ids)
        return await self._timed("delete_batch", call, len(memory_ids))

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        call = self.inner.replace_memories(delete_ids, memories, table_name)
        return await self._timed("replace_batch", call, len(delete_ids) + len(memories))

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        k: int = 10,
        index_type: IndexType = "flat",
        probes: int | None = None,
        ef_search: int | None = None,
        threshold: float | None = None,
        *,
        with_embeddings: bool = True,
    ) -> list[tuple[Memory, float]]:
        call = self.inner.search_memories(
            embedding,
            query,
            k,
            index_type,
            probes,
            ef_search,
            threshold,
            with_embeddings=with_embeddings,
        )
        return await self._timed(f"search_{index_type}", call)

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        await self._timed(f"build_{index_type}", self.inner.build_index(index_type, table_name))

    async def embedding_dimension(self, table_name: str) -> int | None:
        return await self.inner.embedding_dimension(table_name)

    async def close(self) -> None:
        await self.inner.close()

    def __repr__(self) -> str:
        return f"InstrumentedAdapter({self.inner!r})"
