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

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import DatabaseAdapter, IndexType, RoomSummary, SearchParams

__all__ = ["ReplayStore"]


class ReplayStore:
    """Reads of the conversation's `tables` and every write on `scratch`; reads of any other
    table on `live`. Owns neither store: closing it closes nothing."""

    backend = "replay"

    def __init__(
        self, scratch: DatabaseAdapter, live: DatabaseAdapter, tables: Iterable[str]
    ) -> None:
        self._scratch = scratch
        self._live = live
        self._tables = {DEFAULT_TABLE, *tables}

    def _reads(self, table: str | None) -> DatabaseAdapter:
        return self._scratch if (table or DEFAULT_TABLE) in self._tables else self._live

    def _writes(self, tables: Iterable[str | None]) -> DatabaseAdapter:
        self._tables.update(t or DEFAULT_TABLE for t in tables)
        return self._scratch

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        store = self._writes((table_name or memory.table_name,))
        return await store.create_memory(memory, table_name)

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        found = await self._scratch.get_memory(memory_id)
        if found is None:
            found = await self._live.get_memory(memory_id)
            if found is not None and found.table_name in self._tables:
                return None  # said later in the conversation: not there yet
        return found

    async def update_memory(self, update: MemoryUpdate) -> bool:
        return await self._scratch.update_memory(update)

    async def delete_memory(self, memory_id: UUID) -> bool:
        return await self._scratch.delete_memory(memory_id)

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        return await self._reads(query.table_name).get_memories(query)

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        table = query.table_name if query is not None else None
        return await self._reads(table).count_memories(query)

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        table = query.table_name if query is not None else None
        return await self._reads(table).room_summaries(query)

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        tables = (table_name,) if table_name else [m.table_name for m in memories]
        return await self._writes(tables).create_memories_batch(memories, table_name)

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        return await self._scratch.update_memories_batch(updates)

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        return await self._scratch.delete_memories_batch(memory_ids)

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        tables = (table_name,) if table_name else [m.table_name for m in memories]
        store = self._writes(tables)
        return await store.replace_memories(delete_ids, memories, table_name)

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        table = query.table_name if query is not None else None
        return await self._reads(table).search_memories(embedding, query, params)

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        await self._reads(table_name).build_index(index_type, table_name)

    async def embedding_dimension(self, table_name: str) -> int | None:
        return await self._reads(table_name).embedding_dimension(table_name)

    async def reset_embeddings(self, table_name: str) -> int:
        return await self._writes((table_name,)).reset_embeddings(table_name)

    async def close(self) -> None:
        """Nothing: the stores are their owners' to close."""
