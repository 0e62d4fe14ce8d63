"""`ReplayStore`: the memory store a replay runs on, the conversation as it stood then.

A replayed message must see what the recorded one saw. Its conversation's tables (the tables
the trail records memories in, and ``messages``) come from a scratch store that the replay
fills message by message, so a provider searching them (``recall``) finds only what was said
before, never the rest of the conversation the configured store holds now. Every other table
(knowledge, documents) is read from the configured store, which the replay never writes to:
every write goes to the scratch store, and a table written in the replay is read from it from
then on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery
from contracts.storage import (
    DatabaseAdapter,
    IndexType,
    MemoryText,
    RoomSummary,
    SearchParams,
    get_texts,
)
from host.forwarding import ForwardingAdapter

__all__ = ["ReplayStore"]


class ReplayStore(ForwardingAdapter):
    """Every write, and the reads of the conversation's `tables`, on `scratch` (the forwarded
    store); the reads of any other table on `live`. Owns neither: closing it closes nothing."""

    def __init__(
        self, scratch: DatabaseAdapter, live: DatabaseAdapter, tables: Iterable[str]
    ) -> None:
        super().__init__(scratch)
        self.live = live
        self._tables = {DEFAULT_TABLE, *tables}

    def _reads(self, query: MemoryQuery | str | None) -> DatabaseAdapter:
        table = query.table_name if isinstance(query, MemoryQuery) else query
        return self.inner if (table or DEFAULT_TABLE) in self._tables else self.live

    def _written(self, tables: Iterable[str | None]) -> None:
        self._tables.update(t or DEFAULT_TABLE for t in tables)

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        self._written((table_name or memory.table_name,))
        return await super().create_memory(memory, table_name)

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        self._written((table_name,) if table_name else [m.table_name for m in memories])
        return await super().create_memories_batch(memories, table_name)

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        self._written((table_name,) if table_name else [m.table_name for m in memories])
        return await super().replace_memories(delete_ids, memories, table_name)

    async def reset_embeddings(self, table_name: str) -> int:
        self._written((table_name,))
        return await super().reset_embeddings(table_name)

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        found = await self.inner.get_memory(memory_id)
        if found is None:
            found = await self.live.get_memory(memory_id)
            if found is not None and found.table_name in self._tables:
                return None  # said later in the conversation: not there yet
        return found

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        return await self._reads(query).get_memories(query)

    async def get_memory_texts(self, query: MemoryQuery) -> list[MemoryText]:
        return await get_texts(self._reads(query), query)

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        return await self._reads(query).count_memories(query)

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        return await self._reads(query).room_summaries(query)

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        """One table's search (several scopes' searches, `search_memories_any`, come here one
        by one: `ForwardingAdapter` sees this override)."""
        return await self._reads(query).search_memories(embedding, query, params)

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        await self._reads(table_name).build_index(index_type, table_name)

    async def embedding_dimension(self, table_name: str) -> int | None:
        return await self._reads(table_name).embedding_dimension(table_name)

    async def close(self) -> None:
        """Nothing: the stores are their owners' to close."""
