"""`ForwardingAdapter`: a `DatabaseAdapter` over another one, for wrappers that change a few calls.

A wrapper (the host's timing one, the cluster's unit of work, a cache in front of a store)
subclasses it and overrides only what it changes; every other call goes to `inner`. Each
forwarded call passes through `_forward` with an operation name, so a wrapper observing every
call (timing, counting) overrides that one method instead of all of them. Part of the store
kit (`host.storekit`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TypeVar
from uuid import UUID

from contracts.memory import Memory, MemoryQuery, MemoryUpdate
from contracts.storage import (
    DEFAULT_SEARCH,
    DatabaseAdapter,
    IndexType,
    MemoryText,
    RoomSummary,
    SearchParams,
    get_texts,
    search_each,
)

__all__ = ["ForwardingAdapter"]

T = TypeVar("T")


class ForwardingAdapter:
    """Forwards every `DatabaseAdapter` call to `inner` through `_forward`.

    Operation names: ``create``, ``get``, ``update``, ``delete``, ``query`` (`get_memories`,
    `get_memory_texts`), ``count`` (counts and room summaries), ``create_batch``,
    ``update_batch``, ``delete_batch``, ``replace_batch``, ``search_<index type>``
    (`search_memories`, `search_memories_any`), ``build_<index type>``, ``reset_embeddings``.
    `embedding_dimension` and `close` go straight to `inner`."""

    def __init__(self, inner: DatabaseAdapter) -> None:
        self.inner = inner
        self.backend = inner.backend

    async def _forward(self, operation: str, call: Awaitable[T], size: int | None = None) -> T:
        """Await `call` (`inner`'s) for `operation`; `size`: a batch call's row count."""
        return await call

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        return await self._forward("create", self.inner.create_memory(memory, table_name))

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        return await self._forward("get", self.inner.get_memory(memory_id))

    async def update_memory(self, update: MemoryUpdate) -> bool:
        return await self._forward("update", self.inner.update_memory(update))

    async def delete_memory(self, memory_id: UUID) -> bool:
        return await self._forward("delete", self.inner.delete_memory(memory_id))

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        return await self._forward("query", self.inner.get_memories(query))

    async def get_memory_texts(self, query: MemoryQuery) -> list[MemoryText]:
        """`inner`'s texts of `query`'s memories (`TextReads`). A subclass overriding
        `get_memories` is read through it instead (`get_texts` sees to that)."""
        return await self._forward("query", get_texts(self.inner, query))

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        return await self._forward("count", self.inner.count_memories(query))

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        return await self._forward("count", self.inner.room_summaries(query))

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        call = self.inner.create_memories_batch(memories, table_name)
        return await self._forward("create_batch", call, len(memories))

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        call = self.inner.update_memories_batch(updates)
        return await self._forward("update_batch", call, len(updates))

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        call = self.inner.delete_memories_batch(memory_ids)
        return await self._forward("delete_batch", call, len(memory_ids))

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        call = self.inner.replace_memories(delete_ids, memories, table_name)
        return await self._forward("replace_batch", call, len(delete_ids) + len(memories))

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        kind = (params or DEFAULT_SEARCH).index_type
        call = self.inner.search_memories(embedding, query, params)
        return await self._forward(f"search_{kind}", call)

    async def search_memories_any(
        self,
        embedding: Sequence[float],
        queries: Sequence[MemoryQuery],
        params: SearchParams | None = None,
        *,
        leave_out: MemoryQuery | None = None,
    ) -> list[tuple[Memory, float]]:
        """`inner`'s search of several filters at once (`ScopedSearch`), when it has one and
        this wrapper leaves searches as they are; else one `search_memories` per query."""
        scoped = getattr(self.inner, "search_memories_any", None)
        if scoped is None or type(self).search_memories is not ForwardingAdapter.search_memories:
            return await search_each(self, embedding, queries, params, leave_out=leave_out)
        kind = (params or DEFAULT_SEARCH).index_type
        found: list[tuple[Memory, float]] = await self._forward(
            f"search_{kind}", scoped(embedding, queries, params, leave_out=leave_out)
        )
        return found

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        call = self.inner.build_index(index_type, table_name)
        await self._forward(f"build_{index_type}", call)

    async def embedding_dimension(self, table_name: str) -> int | None:
        return await self.inner.embedding_dimension(table_name)

    async def reset_embeddings(self, table_name: str) -> int:
        call = self.inner.reset_embeddings(table_name)
        return await self._forward("reset_embeddings", call)

    async def close(self) -> None:
        await self.inner.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"
