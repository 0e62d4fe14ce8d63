"""`ReplayStore`: the memory store a replay runs on, the conversation as it stood then.

A replayed message must see what the recorded one saw. Its conversation's tables (the tables
the trail records memories in, and ``messages``) come from a scratch store that the replay
fills message by message, so a provider searching them (``recall``) finds only what was said
before, never the rest of the conversation the configured store holds now. Every other table
(knowledge, documents) is read from the configured store, which the replay never writes to:
every write goes to the scratch store, and a table written in the replay is read from it from
then on. Read from the configured store, a memory created after the replay's clock (a document
added to the knowledge base later in the conversation) is not there yet. Read from the scratch
store, the memories in `ReplayStore.hidden` are not there either: those the recording stored
while the message being replayed was answered (by conversations answered at the same time),
which its prompt could not see. A memory the recording stored (the replay's memories keep their
recorded ids) is stored with its recorded time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery
from contracts.storage import (
    DEFAULT_SEARCH,
    DatabaseAdapter,
    IndexType,
    MemoryText,
    RoomSummary,
    SearchParams,
    get_texts,
    search_any,
    search_each,
    sort_rooms,
)
from host.forwarding import ForwardingAdapter

__all__ = ["ReplayStore"]


class _Row(Protocol):
    @property
    def id(self) -> UUID: ...


R = TypeVar("R", bound=_Row)


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
        times: Mapping[UUID, datetime] | None = None,
    ) -> None:
        super().__init__(scratch)
        self.live = live
        self._tables = {DEFAULT_TABLE, *tables}
        self._now = now
        self._times = times or {}
        self.hidden: frozenset[UUID] = frozenset()
        """Memories of the scratch store its reads leave out (set per replayed message)."""

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

    def _unhidden(self, params: SearchParams | None) -> SearchParams:
        """`params` leaving out the hidden memories too."""
        params = params or DEFAULT_SEARCH
        return replace(params, exclude=params.exclude | self.hidden) if self.hidden else params

    async def _read(
        self, query: MemoryQuery, read: Callable[[MemoryQuery], Awaitable[list[R]]]
    ) -> list[R]:
        """`read(query)` of the scratch store without the hidden memories (as many more read
        as could be left out, so a limit still gives its count)."""
        if not self.hidden:
            return await read(query)
        wider = query
        if query.limit is not None:
            wider = query.model_copy(update={"limit": query.limit + len(self.hidden)})
        kept = [row for row in await read(wider) if row.id not in self.hidden]
        return kept if query.limit is None else kept[: query.limit]

    def _as_recorded(self, memories: Sequence[Memory]) -> list[Memory]:
        """`memories`, each one the recording stored (by id) at the time it was stored then: its
        place among the others as recorded (the replay's clock runs just after each message)."""
        out = []
        for memory in memories:
            at = self._times.get(memory.id)
            if at is not None and at != memory.created_at:
                memory = memory.model_copy(update={"created_at": at})
            out.append(memory)
        return out

    def _written(self, tables: Iterable[str | None]) -> None:
        self._tables.update(t or DEFAULT_TABLE for t in tables)

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        self._written((table_name or memory.table_name,))
        return await super().create_memory(self._as_recorded([memory])[0], table_name)

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        self._written((table_name,) if table_name else [m.table_name for m in memories])
        return await super().create_memories_batch(self._as_recorded(memories), table_name)

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        self._written((table_name,) if table_name else [m.table_name for m in memories])
        return await super().replace_memories(delete_ids, self._as_recorded(memories), table_name)

    async def reset_embeddings(self, table_name: str) -> int:
        self._written((table_name,))
        return await super().reset_embeddings(table_name)

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        if memory_id in self.hidden:
            return None
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
        if store is self.inner:
            return await self._read(query, store.get_memories)
        return await store.get_memories(query)

    async def get_memory_texts(self, query: MemoryQuery) -> list[MemoryText]:
        store, query = self._route(query)
        if store is self.inner:
            return await self._read(query, lambda q: get_texts(store, q))
        return await get_texts(store, query)

    async def _hidden_in(self, query: MemoryQuery) -> list[Memory]:
        """The hidden memories of the scratch store that `query` matches."""
        found = []
        for memory_id in self.hidden:
            memory = await self.inner.get_memory(memory_id)
            if memory is not None and query.matches(memory):
                found.append(memory)
        return found

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        store, query = self._route(query or MemoryQuery())
        count = await store.count_memories(query)
        if store is self.inner and self.hidden:
            count -= len(await self._hidden_in(query))
        return count

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        """The store's summaries, less the hidden memories: a room's count without them, its
        last time that of its newest memory left, a room holding only hidden ones left out."""
        store, query = self._route(query or MemoryQuery())
        rooms = await store.room_summaries(query)
        if store is not self.inner or not self.hidden:
            return rooms
        hidden: dict[UUID, int] = {}
        for memory in await self._hidden_in(query):
            hidden[memory.room_id] = hidden.get(memory.room_id, 0) + 1
        out = []
        for room in rooms:
            left = room.memories - hidden.get(room.room_id, 0)
            if room.room_id not in hidden:
                out.append(room)
            elif left > 0:
                newest = await self._read(
                    query.model_copy(
                        update={"room_id": room.room_id, "after": None, "order": "desc", "limit": 1}
                    ),
                    store.get_memories,
                )
                last = newest[0].created_at if newest else room.last_at
                out.append(RoomSummary(room_id=room.room_id, memories=left, last_at=last))
        return sort_rooms(out)

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        """One table's search (several scopes' searches, `search_memories_any`, come here one
        by one: `ForwardingAdapter` sees this override)."""
        store, query = self._route(query or MemoryQuery())
        if store is self.inner:
            params = self._unhidden(params)
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
            self._unhidden(params) if store is self.inner else params,
            leave_out=narrowed[-1] if leave_out else None,
        )

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        """The scratch store's index of a table it holds; nothing for a table read from the
        configured store, which the replay never writes to (on PostgreSQL an index build is a
        ``CREATE INDEX``): its searches are answered without the warm-up."""
        store = self._reads(table_name)
        if store is self.inner:
            await store.build_index(index_type, table_name)

    async def embedding_dimension(self, table_name: str) -> int | None:
        return await self._reads(table_name).embedding_dimension(table_name)

    async def close(self) -> None:
        """Nothing: the stores are their owners' to close."""
