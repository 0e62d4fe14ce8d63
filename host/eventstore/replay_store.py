"""`ReplayStore`: the memory store a replay runs on, the conversation as it stood then.

A replayed message must see what the recorded one saw. Its conversation's tables (the tables
the trail records memories in, and ``messages``) come from a scratch store that the replay
fills message by message, so a provider searching them (``recall``) finds only what was said
before, never the rest of the conversation the configured store holds now. Every other table
(knowledge, documents) is read from the configured store, which the replay never writes to:
every write goes to the scratch store, and a table written in the replay is read from it from
then on. Read from the configured store, a memory created after the replay's clock (a document
added to the knowledge base later in the conversation) is not there yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from uuid import UUID

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery
from contracts.storage import (
    DatabaseAdapter,
    IndexType,
    MemoryText,
    RoomSummary,
    SearchParams,
    get_texts,
    search_any,
    search_each,
)
from host.forwarding import ForwardingAdapter

__all__ = ["ReplayStore"]


class ReplayStore(ForwardingAdapter):
    """Every write, and the reads of the conversation's `tables`, on `scratch` (the forwarded
    store); the reads of any other table on `live`, of the memories created before `now()` (the
    replay's clock; None: all). Owns neither: closing it closes nothing."""

    def __init__(
        self,
        scratch: DatabaseAdapter,
        live: DatabaseAdapter,
        tables: Iterable[str],
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(scratch)
        self.live = live
        self._tables = {DEFAULT_TABLE, *tables}
        self._now = now

    def _reads(self, query: MemoryQuery | str | None) -> DatabaseAdapter:
        table = query.table_name if isinstance(query, MemoryQuery) else query
        return self.inner if (table or DEFAULT_TABLE) in self._tables else self.live

    def _then(self, query: MemoryQuery) -> MemoryQuery:
        """`query` of the configured store's memories as they stood at the replay's clock."""
        if self._now is None:
            return query
        now = self._now()
        return query.model_copy(update={"end": now if query.end is None else min(query.end, now)})

    def _route(self, query: MemoryQuery) -> tuple[DatabaseAdapter, MemoryQuery]:
        store = self._reads(query)
        return store, query if store is self.inner else self._then(query)

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
            if found is not None and (
                found.table_name in self._tables  # said later in the conversation
                or (self._now is not None and found.created_at >= self._now())  # added later
            ):
                return None  # not there yet
        return found

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        store, query = self._route(query)
        return await store.get_memories(query)

    async def get_memory_texts(self, query: MemoryQuery) -> list[MemoryText]:
        store, query = self._route(query)
        return await get_texts(store, query)

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        store, query = self._route(query or MemoryQuery())
        return await store.count_memories(query)

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        store, query = self._route(query or MemoryQuery())
        return await store.room_summaries(query)

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        """One table's search (several scopes' searches, `search_memories_any`, come here one
        by one: `ForwardingAdapter` sees this override)."""
        store, query = self._route(query or MemoryQuery())
        return await store.search_memories(embedding, query, params)

    async def search_memories_any(
        self,
        embedding: Sequence[float],
        queries: Sequence[MemoryQuery],
        params: SearchParams | None = None,
        *,
        leave_out: MemoryQuery | None = None,
    ) -> list[tuple[Memory, float]]:
        """Several scopes' search (`ScopedSearch`): where they all read one store, as that
        store makes it (its own scoped search: equal scores rank as they did when recorded),
        else one search a scope (`search_each`, through `search_memories`)."""
        routed = [self._route(q) for q in (*queries, *([leave_out] if leave_out else []))]
        stores = {id(store) for store, _ in routed}
        if len(stores) != 1:
            return await search_each(self, embedding, queries, params, leave_out=leave_out)
        store = routed[0][0]
        narrowed = [q for _, q in routed]
        return await search_any(
            store,
            embedding,
            narrowed[: len(queries)],
            params,
            leave_out=narrowed[-1] if leave_out else None,
        )

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        await self._reads(table_name).build_index(index_type, table_name)

    async def embedding_dimension(self, table_name: str) -> int | None:
        return await self._reads(table_name).embedding_dimension(table_name)

    async def close(self) -> None:
        """Nothing: the stores are their owners' to close."""
