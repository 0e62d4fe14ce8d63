"""The storage contract: the `DatabaseAdapter` protocol every memory backend implements.

Backends (sqlite, inmemory, postgres) are plugins binding the `DATABASE` token; they pass one
shared conformance suite (tests/storage/), so code written against this protocol behaves the
same on each. Streaming reads over any adapter: ``contracts.streaming.MemoryManager``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable
from uuid import UUID

from contracts.errors import AgentHostError
from contracts.memory import Memory, MemoryQuery, MemoryUpdate
from contracts.tokens import Token

__all__ = [
    "DATABASE",
    "DEFAULT_SEARCH",
    "BatchError",
    "DatabaseAdapter",
    "DimensionMismatchError",
    "DuplicateMemoryError",
    "IndexType",
    "InvalidMemoryError",
    "InvalidQueryError",
    "LocalFileSettings",
    "MemoryText",
    "MigratableStore",
    "MigratedStore",
    "MigrationStep",
    "PoolExhaustedError",
    "PooledStore",
    "PooledStoreOpener",
    "RoomSummary",
    "ScopedSearch",
    "SearchParams",
    "StorageError",
    "StorageUnavailableError",
    "TextReads",
    "get_texts",
    "merge_hits",
    "search_any",
    "search_each",
    "sort_rooms",
]

IndexType = Literal["flat", "ivf", "hnsw"]
"""Vector search method: ``flat`` is exact; ``ivf`` and ``hnsw`` are approximate indexes."""


@dataclass(frozen=True, slots=True)
class SearchParams:
    """How `DatabaseAdapter.search_memories` searches: how many results, by which index, how
    hard, and what it returns. Immutable: one instance can serve every search of a caller.

    Checked by the store when it searches (`InvalidQueryError` for k < 1, an unknown
    `index_type`, a `probes` or `ef_search` below 1), alike on every backend."""

    k: int = 10
    """How many memories at most, best first."""
    index_type: IndexType = "flat"
    """``flat`` is exact; ``ivf`` and ``hnsw`` are approximate indexes."""
    probes: int | None = None
    """IVF lists scanned per query (None or 0: the store's default)."""
    ef_search: int | None = None
    """HNSW candidate list size (None or 0: the store's default, tuned or configured)."""
    threshold: float | None = None
    """Only results scoring at least this cosine similarity are kept."""
    with_embeddings: bool = True
    """False: the results' ``embedding`` is None (not read, not decoded): a prompt needs their
    content, and k vectors of floats cost more than the search on a fast index."""
    exclude: frozenset[UUID] = frozenset()
    """Memories left out of the results (ids the caller holds already, e.g. the recent
    conversation a prompt shows): the k best of the others, without reading or decoding the
    ones left out."""


DEFAULT_SEARCH = SearchParams()
"""The search `search_memories` makes when given no `SearchParams`: exact, top 10."""


class StorageError(AgentHostError):
    """Base of every error a memory backend raises on purpose."""


class InvalidQueryError(StorageError, ValueError):
    """A search or query argument out of range (k < 1, unknown index type, zero vector...)."""


class InvalidMemoryError(StorageError, ValueError):
    """A memory whose content or metadata a store refuses to keep: nested deeper than
    `contracts.memory.MAX_JSON_DEPTH` or longer than `MAX_JSON_LENGTH` as JSON (it could not be
    read back, or would burden every read of its room). Nothing of it is written."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"memory {field} {reason}")
        self.field = field
        self.reason = reason


class PoolExhaustedError(StorageError, TimeoutError):
    """No pooled connection became free within the acquire timeout (every one stayed in use)."""


class StorageUnavailableError(StorageError, ConnectionError):
    """The database server cannot be reached (down, restarting, unreachable, or refusing this
    client): transient, worth retrying later. The message names the server, never a password."""


class DuplicateMemoryError(StorageError):
    """A memory created with an id that already exists."""

    def __init__(self, memory_id: UUID) -> None:
        super().__init__(f"a memory with id {memory_id} already exists")
        self.memory_id = memory_id


class DimensionMismatchError(StorageError):
    """An embedding whose length differs from the dimension fixed for its table."""

    def __init__(self, table_name: str, expected: int, got: int) -> None:
        super().__init__(
            f"embedding dimension mismatch in table {table_name!r}: the table stores {expected}-d"
            f" embeddings (fixed by its first write), got {got}-d"
        )
        self.table_name = table_name
        self.expected = expected
        self.got = got


class BatchError(StorageError):
    """A batch write that failed at row `index`; nothing of the batch was written.

    ``cause`` (also ``__cause__``) is the row's own error, e.g. `DimensionMismatchError`.
    """

    def __init__(self, operation: str, index: int, cause: BaseException) -> None:
        super().__init__(
            f"{operation} failed at row {index} ({type(cause).__name__}: {cause});"
            " the whole batch was rolled back, nothing was written"
        )
        self.operation = operation
        self.index = index
        self.cause = cause
        self.__cause__ = cause


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room holding memories, from `DatabaseAdapter.room_summaries`."""

    room_id: UUID
    memories: int
    """How many of the matching memories (every table) belong to the room."""
    last_at: datetime
    """When its newest matching memory was created."""


def sort_rooms(rooms: Sequence[RoomSummary]) -> list[RoomSummary]:
    """`rooms` in the protocol's order: most recently active first, ties by room id."""
    return sorted(rooms, key=lambda r: (r.last_at, r.room_id.bytes), reverse=True)


@runtime_checkable
class DatabaseAdapter(Protocol):
    """An async memory store. Every method is safe to call concurrently from one event loop.

    Semantics all backends share:

    - a memory lives in one table (``memory.table_name``, or the ``table_name`` argument of a
      create, which overrides it); ids are unique across tables;
    - each table has one embedding dimension, fixed by the first embedding written to it; a
      different length raises `DimensionMismatchError`;
    - each batch method is one transaction: on any bad row it raises `BatchError` naming the
      row, and the store is exactly as before the call;
    - results are ordered by ``(created_at, id)`` in ``query.order``.
    """

    backend: str
    """Short backend name: ``sqlite``, ``inmemory``, ``postgres``."""

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        """Store `memory` (in `table_name` if given); returns its id.

        Raises `DuplicateMemoryError` if the id exists, `DimensionMismatchError` on a bad
        embedding length."""
        ...

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        """The memory with this id, or None."""
        ...

    async def update_memory(self, update: MemoryUpdate) -> bool:
        """Apply `update`; False if no memory has its id."""
        ...

    async def delete_memory(self, memory_id: UUID) -> bool:
        """Delete one memory; False if it did not exist."""
        ...

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        """Memories matching `query`, in its order, at most ``query.limit``."""
        ...

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        """How many memories match `query`'s filters (its ``limit`` is ignored)."""
        ...

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        """The rooms holding memories that match `query`'s filters (its order, limit and
        cursor are ignored), with how many and when the newest was created; most recently
        active first (`sort_rooms`). One grouped query: an agent's rooms without reading its
        memories (the web console's pickers, ``GET /agents/{agent}/rooms``)."""
        ...

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        """Store all `memories` in one transaction (all into `table_name` if given); their ids."""
        ...

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        """Apply all `updates` in one transaction; per update, whether its memory existed."""
        ...

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        """Delete these memories in one transaction; how many existed."""
        ...

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        """Delete `delete_ids` and store `memories` in one transaction: a reader sees the old
        rows or the new ones, never both or neither (a document's chunks replaced by its new
        version). A memory may reuse a deleted id. On a bad row it raises `BatchError` (as
        `create_memories_batch`) and nothing is deleted. Returns the new ids."""
        ...

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        """The ``params.k`` memories most similar to `embedding` by cosine similarity, best
        first (`SearchParams`; None: `DEFAULT_SEARCH`).

        Searches one table, ``query.table_name`` (default ``messages``), among rows with an
        embedding that match the query's filters (its order, limit and cursor are ignored).
        ``flat`` is exact; ``ivf`` uses ``params.probes`` lists and ``hnsw`` uses
        ``params.ef_search`` (backend defaults when None). Only scores >= ``params.threshold``
        are kept; equal scores come in any order. With ``params.with_embeddings`` False the
        results' ``embedding`` is None.

        An approximate index is built when first asked for, without holding up the store: the
        searches made while it is built are answered exactly (``flat``). `build_index` waits
        for it.
        """
        ...

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        """Build `table_name`'s (default ``messages``) `index_type` index now and return once
        searches use it: a warm-up (at start-up, after a bulk import), since a first build
        takes a while on a big table (an HNSW graph of 100k x 384-d: 20-90 s). The store keeps
        serving meanwhile. Nothing to do for a table without embeddings, or for ``flat``.
        """
        ...

    async def embedding_dimension(self, table_name: str) -> int | None:
        """The dimension fixed for `table_name`, or None before its first embedding."""
        ...

    async def reset_embeddings(self, table_name: str) -> int:
        """Remove every embedding of `table_name` and unfix its dimension, in one transaction
        (its vector indexes are dropped); returns how many memories lost their embedding.

        The way to a new embedding model (``agenthost memory reembed``): vectors of two models
        must never share an index, so the old ones go before the new ones are written."""
        ...

    async def close(self) -> None:
        """Release connections, threads and indexes; the adapter is unusable afterwards."""
        ...


DATABASE: Token[DatabaseAdapter] = Token("database", DatabaseAdapter)
"""The memory store service; sqlite by default, pinned with ``services: {database: ...}``."""


def merge_hits(
    found: Iterable[Sequence[tuple[Memory, float]]], k: int
) -> list[tuple[Memory, float]]:
    """The `k` best of several searches' hits, best first, each memory once (at its best
    score): what `search_any` returns, from the searches of its queries one at a time."""
    best: dict[UUID, tuple[Memory, float]] = {}
    for hits in found:
        for memory, score in hits:
            kept = best.get(memory.id)
            if kept is None or kept[1] < score:
                best[memory.id] = (memory, score)
    return sorted(best.values(), key=lambda hit: -hit[1])[:k]


class MemoryText(NamedTuple):
    """What a line of the conversation shows of a memory: its id, its speaker and its text."""

    id: UUID
    entity_id: UUID
    text: str
    """The memory's ``content.text``."""


@runtime_checkable
class TextReads(Protocol):
    """A store that reads memories' texts without building the memories (optional: `get_texts`
    reads a store without it through `get_memories`)."""

    async def get_memory_texts(self, query: MemoryQuery) -> list[MemoryText]:
        """The `MemoryText` of each memory ``get_memories(query)`` returns, in its order."""
        ...


async def get_texts(database: DatabaseAdapter, query: MemoryQuery) -> list[MemoryText]:
    """The id, speaker and ``content.text`` of each memory `query` reads, in its order: what a
    prompt's history shows. Where the store can (`TextReads`: the SQLite store), without
    building a `Memory` per row (its content, metadata and time decoded: about a tenth of a
    one-room message's CPU); else from `get_memories`, and so when a subclass overrides
    `get_memories` below the class giving `get_memory_texts` (its reads are its own)."""
    texts = getattr(database, "get_memory_texts", None)  # `TextReads`, checked cheaply
    if texts is not None and _texts_follow_reads(type(database)):
        found: list[MemoryText] = await texts(query)
        return found
    memories = await database.get_memories(query)
    return [MemoryText(m.id, m.entity_id, m.content.text) for m in memories]


_FOLLOWS: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _texts_follow_reads(cls: type) -> bool:
    """Whether `cls`'s `get_memory_texts` comes from the class of its `get_memories` or from
    one below it (kept per class, weakly: reloaded plugins' classes go)."""
    follows = _FOLLOWS.get(cls)
    if follows is None:
        mro = cls.__mro__

        def defined(name: str) -> int:
            return next((at for at, base in enumerate(mro) if name in vars(base)), len(mro))

        follows = _FOLLOWS[cls] = defined("get_memory_texts") <= defined("get_memories")
    return follows


@runtime_checkable
class ScopedSearch(Protocol):
    """A store that searches the rows of several filters at once (optional: `search_any` asks
    a store without it one filter at a time)."""

    async def search_memories_any(
        self,
        embedding: Sequence[float],
        queries: Sequence[MemoryQuery],
        params: SearchParams | None = None,
        *,
        leave_out: MemoryQuery | None = None,
    ) -> list[tuple[Memory, float]]:
        """The ``params.k`` memories most similar to `embedding` among the rows matching any
        of `queries` (each memory once, best first): for an exact (``flat``) search, what
        `merge_hits` makes of `search_memories` asked each query; an approximate one may
        differ as each of those searches may. `queries` may name different tables.

        `leave_out`: the memories `get_memories` returns for it (its filters, order and limit:
        the recent conversation a prompt shows) are left out as ``params.exclude``'s are, at
        the snapshot the search reads (`search_each` reads them first)."""
        ...


async def search_any(
    database: DatabaseAdapter,
    embedding: Sequence[float],
    queries: Sequence[MemoryQuery],
    params: SearchParams | None = None,
    *,
    leave_out: MemoryQuery | None = None,
) -> list[tuple[Memory, float]]:
    """The ``params.k`` best memories matching any of `queries`, beyond ``params.exclude`` and
    what `leave_out` reads (`ScopedSearch`): one search where the store can make it (the
    SQLite store: one scoring of the filters' rows together, and one statement reading the
    hits, leaving out `leave_out`'s rows itself), else one per query, merged (`search_each`).
    A recall provider's scopes (this room, the speaker's messages anywhere) are such queries,
    and the recent conversation its `leave_out`."""
    if not queries:
        return []
    scoped = getattr(database, "search_memories_any", None)  # `ScopedSearch`, checked cheaply
    if scoped is not None:
        found: list[tuple[Memory, float]] = await scoped(
            embedding, queries, params, leave_out=leave_out
        )
        return found
    return await search_each(database, embedding, queries, params, leave_out=leave_out)


async def search_each(
    database: DatabaseAdapter,
    embedding: Sequence[float],
    queries: Sequence[MemoryQuery],
    params: SearchParams | None = None,
    *,
    leave_out: MemoryQuery | None = None,
) -> list[tuple[Memory, float]]:
    """`search_any` by reading `leave_out`'s memories, then one `search_memories` per query
    leaving them out, merged: the reference semantics, and what a store answers that cannot
    search its filters' rows together. A store written before `SearchParams.exclude` returns
    what it should leave out: then it is asked for that many more, and they are dropped."""
    params = params or DEFAULT_SEARCH
    if leave_out is not None:
        shown = await database.get_memories(leave_out)
        params = replace(params, exclude=params.exclude | {memory.id for memory in shown})
    found = await _each(database, embedding, queries, params)
    left_out = params.exclude
    if left_out and any(memory.id in left_out for memory, _ in found):
        more = replace(params, k=params.k + len(left_out))
        found = await _each(database, embedding, queries, more)
        found = [hit for hit in found if hit[0].id not in left_out][: params.k]
    return found


async def _each(
    database: DatabaseAdapter,
    embedding: Sequence[float],
    queries: Sequence[MemoryQuery],
    params: SearchParams,
) -> list[tuple[Memory, float]]:
    if len(queries) == 1:
        return await database.search_memories(embedding, queries[0], params)
    each = await asyncio.gather(
        *(database.search_memories(embedding, query, params) for query in queries)
    )
    return merge_hits(each, params.k)


@runtime_checkable
class PooledStore(DatabaseAdapter, Protocol):
    """A `DatabaseAdapter` on a PostgreSQL connection pool that lends it out: cluster mode keeps
    its room queue in the same database and commits a message's memories with the room's
    progress in one transaction; the audit trail may share the pool."""

    where: str
    """The server, without a password (``postgresql://user@host:port/db``)."""
    pool: Any
    """The psycopg_pool ``AsyncConnectionPool``."""

    def with_connection(self) -> AbstractAsyncContextManager[Any]:
        """A pooled psycopg connection, committed if the block succeeds, else rolled back."""
        ...

    async def create_missing_on(self, conn: Any, memories: Sequence[Memory]) -> list[UUID]:
        """Write those of `memories` not stored yet, on `conn`, in the caller's transaction."""
        ...

    async def update_on(self, conn: Any, updates: Sequence[MemoryUpdate]) -> list[bool]:
        """`update_memories_batch` on `conn`, in the caller's transaction."""
        ...

    async def delete_on(self, conn: Any, memory_ids: Sequence[UUID]) -> int:
        """`delete_memories_batch` on `conn`, in the caller's transaction."""
        ...


@runtime_checkable
class PooledStoreOpener(Protocol):
    """A store plugin that opens a `PooledStore` on a database URL (cluster mode's store)."""

    async def open_pooled(self, url: str, *, min_size: int, max_size: int) -> PooledStore:
        """A new store on `url`, its schema migrated; the caller closes it."""
        ...


MigrationStep = Callable[[int, int, str], None]
"""Told ``(n, of, description)`` before the n-th of `of` pending schema migrations runs."""


@dataclass(frozen=True, slots=True)
class MigratedStore:
    """What `MigratableStore.migrate_store` did."""

    where: str
    """A path, or a URL without its password."""
    version: int | None
    """The schema version now (None: the store keeps no number)."""


@runtime_checkable
class MigratableStore(Protocol):
    """A store plugin whose schema ``agenthost db migrate`` can bring up to date now, rather
    than when the host next opens the store."""

    async def migrate_store(self, on_step: MigrationStep) -> MigratedStore:
        """Open the configured store, apply its pending migrations (telling `on_step` each
        one as it starts), close it. Running it again does nothing."""
        ...


@runtime_checkable
class LocalFileSettings(Protocol):
    """Settings of a store kept in a local file (the sqlite memory store, the audit trail's
    SQLite event store): where the file is for a data directory."""

    def resolve_path(self, data_dir: str | Path | None = None) -> Path:
        """The file: the configured path if absolute, else under `data_dir`."""
        ...
