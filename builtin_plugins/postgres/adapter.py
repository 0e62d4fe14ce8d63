"""`PostgresAdapter`: the `DatabaseAdapter` on PostgreSQL with pgvector, through a psycopg pool.

Each batch is one transaction (all rows or none). The dimension of each memory table is kept in
``memory_tables`` and checked under a row lock, so two writers cannot fix different dimensions.
Vector search: ``flat`` is exact (a scan ordered by cosine distance). ``hnsw`` and ``ivf`` use
pgvector indexes, created on the first search of that kind for a table; a search whose candidate
set is small (a filter such as a room, or a table with few vectors) is answered exactly instead,
because a filtered ANN scan can miss rows and an exact one costs less there anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import (
    DEFAULT_SEARCH,
    BatchError,
    DimensionMismatchError,
    IndexType,
    RoomSummary,
    SearchParams,
    StorageUnavailableError,
    sort_rooms,
)
from host.storekit import (
    IndexParams,
    check_index_type,
    check_search,
    check_table_name,
    describe_url,
    pooled,
    query_vector,
    unbatched,
)

from . import writes
from .connect import VECTOR_HINT, exhausted, migrate_at, missing_vector_hint, open_pool
from .indexes import build_locked, index_valid
from .plugin import INDEX_BUILD_MEMORY
from .rows import (
    COLUMNS,
    COLUMNS_NO_EMBEDDING,
    COPY_FROM,
    LAZY_FROM,
    lazy_rows_to_memories,
    row_to_memory,
    scored,
    where_clause,
)
from .schema import MigrationStep, index_name
from .search import ANN_ONLY, HNSW_MAX_EF_SEARCH, ann_setting, ann_statement, exact_statement

__all__ = [
    "COPY_FROM",
    "EXACT_BELOW",
    "VECTOR_HINT",
    "PostgresAdapter",
    "describe_url",
    "missing_vector_hint",
]

EXACT_BELOW = 20_000
"""Candidate sets up to this size are searched exactly whatever the index type."""


class PostgresAdapter:
    """A `DatabaseAdapter` on PostgreSQL. Create with ``await PostgresAdapter.open(url)``."""

    backend = "postgres"

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        where: str,
        index_params: IndexParams | None = None,
        exact_below: int = EXACT_BELOW,
        index_build_memory: str | None = INDEX_BUILD_MEMORY,
    ) -> None:
        self.pool = pool
        self.where = where
        self.exact_below = exact_below
        self.index_params = index_params or IndexParams()
        self.index_build_memory = index_build_memory
        self._indexed: set[tuple[str, str]] = set()
        # What a search would otherwise ask the server every time: a table's dimension (fixed
        # by its first embedding, never changed), its IVF list count (fixed when the index is
        # built) and whether it has outgrown exact search (tables grow; one shrinking back
        # keeps its ANN answers, which is what it got while it was big).
        self._dimensions: dict[str, int] = {}
        self._written_dims: dict[str, int] = {}
        """Tables' dimensions as `create_missing_on` last found them under their row lock."""
        self._lists: dict[str, int] = {}
        self._large: set[str] = set()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        max_idle: float = 300.0,
        max_lifetime: float = 3600.0,
        reconnect_timeout: float = 300.0,
        check_connections: bool = True,
        connect_timeout: float = 10.0,
        index_params: IndexParams | None = None,
        exact_below: int = EXACT_BELOW,
        index_build_memory: str | None = INDEX_BUILD_MEMORY,
        on_migration: MigrationStep | None = None,
    ) -> PostgresAdapter:
        """Connect, migrate the schema, and open a pool of `min_size`..`max_size` connections.

        A caller waits up to `acquire_timeout` seconds for a free connection, then gets
        `PoolExhaustedError`. Idle connections beyond `min_size` close after `max_idle` s and
        every connection is replaced after `max_lifetime` s; a failed connection attempt is
        retried (with backoff) for `reconnect_timeout` s. With `check_connections`, each
        connection is checked as it leaves the pool (one round trip), so one the server dropped
        is replaced instead of failing the call that got it. Errors name the server and
        database, never the password. Vector indexes are built with `index_build_memory` as
        ``maintenance_work_mem`` (None: the server's own setting). `on_migration` is told each
        schema migration applied."""
        where = describe_url(url)
        await migrate_at(url, where, connect_timeout, on_migration)
        pool = await open_pool(
            url,
            where,
            min_size=min_size,
            max_size=max_size,
            acquire_timeout=acquire_timeout,
            max_idle=max_idle,
            max_lifetime=max_lifetime,
            reconnect_timeout=reconnect_timeout,
            check_connections=check_connections,
            connect_timeout=connect_timeout,
        )
        return cls(
            pool,
            where=where,
            index_params=index_params,
            exact_below=exact_below,
            index_build_memory=index_build_memory,
        )

    @contextlib.asynccontextmanager
    async def with_connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection for raw SQL (a plugin needing more than this protocol).

        The connection goes back to the pool on exit; it is committed if the block succeeds and
        rolled back if it raises (psycopg's pool semantics). Raises `PoolExhaustedError` when
        none is free within the acquire timeout because every one stayed in use, and
        `StorageUnavailableError` naming the server when it cannot be reached (no connection
        could be opened, or the one in use was lost)."""
        async with pooled(
            self.pool, unavailable=StorageUnavailableError, exhausted=exhausted
        ) as conn:
            yield conn

    # -- writes ---------------------------------------------------------------------------------

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        return await unbatched(self.create_memories_batch([memory], table_name))

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        if table_name is not None:
            check_table_name(table_name)
        batch = list(memories)
        if not batch:
            return []
        try:
            async with self.with_connection() as conn, conn.transaction():
                return await self._create(conn, batch, table_name)
        except psycopg.errors.UniqueViolation:
            # a concurrent writer stored one of these ids between the check and the insert
            raise await self._duplicate_error(batch) from None

    async def create_missing_on(
        self, conn: AsyncConnection[Any], memories: Sequence[Memory]
    ) -> list[UUID]:
        """Write those of `memories` whose ids are not stored yet, on `conn`, inside the caller's
        transaction (cluster mode commits a message's memories with the room's progress; a
        message processed again writes the same ids, which are skipped). Returns the ids
        written."""
        if not memories:
            return []
        return await writes.create_on(
            conn, list(memories), None, missing_only=True, known=self._written_dims
        )

    async def _create(
        self,
        conn: AsyncConnection[Any],
        batch: list[Memory],
        override: str | None,
        *,
        missing_only: bool = False,
    ) -> list[UUID]:
        return await writes.create_on(conn, batch, override, missing_only=missing_only)

    async def _duplicate_error(self, batch: list[Memory]) -> BatchError:
        async with self.with_connection() as conn:
            existing = await writes.stored_ids(conn, batch)
        return writes.duplicate_error(batch, existing)

    async def update_memory(self, update: MemoryUpdate) -> bool:
        return await unbatched(self.update_memories_batch([update]))

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        batch = list(updates)
        if not batch:
            return []
        async with self.with_connection() as conn, conn.transaction():
            return await self.update_on(conn, batch)

    async def update_on(
        self, conn: AsyncConnection[Any], updates: Sequence[MemoryUpdate]
    ) -> list[bool]:
        """`update_memories_batch` on `conn`, inside the caller's transaction (cluster mode
        commits a message's updates with the room's progress)."""
        return await writes.update_on(conn, updates)

    async def delete_memory(self, memory_id: UUID) -> bool:
        return await self.delete_memories_batch([memory_id]) == 1

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0
        async with self.with_connection() as conn, conn.transaction():
            return await self.delete_on(conn, ids)

    async def delete_on(self, conn: AsyncConnection[Any], memory_ids: Sequence[UUID]) -> int:
        """`delete_memories_batch` on `conn`, inside the caller's transaction."""
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0
        cursor = await conn.execute("DELETE FROM memories WHERE id = ANY(%s)", (ids,))
        return cursor.rowcount

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        if table_name is not None:
            check_table_name(table_name)
        ids, batch = list(dict.fromkeys(delete_ids)), list(memories)
        try:
            async with self.with_connection() as conn, conn.transaction():
                if ids:
                    await conn.execute("DELETE FROM memories WHERE id = ANY(%s)", (ids,))
                return await self._create(conn, batch, table_name) if batch else []
        except psycopg.errors.UniqueViolation:
            raise await self._duplicate_error(batch) from None

    # -- reads ----------------------------------------------------------------------------------

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        async with self.with_connection() as conn:
            cursor = await conn.execute(
                sql.SQL("SELECT " + COLUMNS + " FROM memories WHERE id = %s"),
                (memory_id,),
                binary=True,
            )
            row = await cursor.fetchone()
        return None if row is None else row_to_memory(row)

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        where, params = where_clause(query)
        direction = sql.SQL("ASC" if query.order == "asc" else "DESC")
        columns = COLUMNS if query.with_embeddings else COLUMNS_NO_EMBEDDING
        statement = sql.SQL(
            "SELECT " + columns + " FROM memories{} ORDER BY created_at {}, id {}{}"
        ).format(
            where,
            direction,
            direction,
            sql.SQL(" LIMIT %s") if query.limit is not None else sql.SQL(""),
        )
        if query.limit is not None:
            params.append(query.limit)
        # in a pipeline: the transaction's BEGIN goes with the query (one round trip, not two:
        # a turn reads the room's recent messages this way)
        async with self.with_connection() as conn, conn.pipeline():
            cursor = await conn.execute(statement, params, binary=True)
            rows = await cursor.fetchall()
        if len(rows) >= LAZY_FROM:
            return lazy_rows_to_memories(rows)  # a page: most fields decoded when first read
        return [row_to_memory(row) for row in rows]

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        where, params = where_clause(query or MemoryQuery())
        statement = sql.SQL("SELECT COUNT(*) FROM memories{}").format(where)
        async with self.with_connection() as conn:
            cursor = await conn.execute(statement, params)
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        where, params = where_clause(query or MemoryQuery(), keyset=False)
        statement = sql.SQL(
            "SELECT room_id, COUNT(*), MAX(created_at) FROM memories{} GROUP BY room_id"
        ).format(where)
        async with self.with_connection() as conn:
            cursor = await conn.execute(statement, params)
            rows = await cursor.fetchall()
        return sort_rooms([RoomSummary(room, int(count), last) for room, count, last in rows])

    async def reset_embeddings(self, table_name: str) -> int:
        check_table_name(table_name)
        async with self.with_connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "UPDATE memories SET embedding = NULL"
                " WHERE table_name = %s AND embedding IS NOT NULL",
                (table_name,),
            )
            cleared = cursor.rowcount
            for kind in ("hnsw", "ivf"):
                await conn.execute(
                    sql.SQL("DROP INDEX IF EXISTS {}").format(
                        sql.Identifier(index_name(kind, table_name))
                    )
                )
            await conn.execute(
                "UPDATE memory_tables SET dimension = NULL, ivf_lists = NULL WHERE table_name = %s",
                (table_name,),
            )
        self._dimensions.pop(table_name, None)
        self._written_dims.pop(table_name, None)
        self._lists.pop(table_name, None)
        self._large.discard(table_name)
        self._indexed -= {key for key in self._indexed if key[1] == table_name}
        return max(0, cleared)

    async def embedding_dimension(self, table_name: str) -> int | None:
        known = self._dimensions.get(table_name)  # fixed by the first embedding: never changes
        if known is not None:
            return known
        async with self.with_connection() as conn:
            cursor = await conn.execute(
                "SELECT dimension FROM memory_tables WHERE table_name = %s", (table_name,)
            )
            row = await cursor.fetchone()
        if row is None or row[0] is None:
            return None
        self._dimensions[table_name] = dimension = int(row[0])
        return dimension

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        search = params or DEFAULT_SEARCH
        kind, k = check_search(search), search.k
        query = query or MemoryQuery()
        table = query.table_name or DEFAULT_TABLE
        dim = await self.embedding_dimension(table)
        if dim is None:
            return []
        if len(embedding) != dim:
            raise DimensionMismatchError(table, dim, len(embedding))
        q = query_vector(embedding, dim)[0]
        scoped = query.model_copy(update={"table_name": table, "after": None})
        where, values = where_clause(scoped, keyset=False)
        where = (where + sql.SQL(" AND ") if values else sql.SQL(" WHERE ")) + sql.SQL(
            "embedding IS NOT NULL"
        )
        if search.exclude:
            where += sql.SQL(" AND NOT (id = ANY(%s))")
            values.append(list(search.exclude))
        columns = COLUMNS if search.with_embeddings else COLUMNS_NO_EMBEDDING
        async with self.with_connection() as conn:
            exact = (
                kind == "flat"
                or query.filters_rows
                # an HNSW scan yields at most ef_search (<= 1000) rows: more are found exactly
                or (kind == "hnsw" and k > HNSW_MAX_EF_SEARCH)
                or await self._small(conn, table)
                # while another caller builds an index, searches are answered exactly
                or not await self._ensure_index(conn, kind, table, dim)
            )
            if exact:
                statement = exact_statement(columns, where)
                cursor = await conn.execute(statement, [q, *values, k], binary=True)
                rows = await cursor.fetchall()
            else:
                knob, value = await self._ann_setting(conn, table, search)
                statement = ann_statement(columns, where, kind, dim)
                # One round trip for the transaction, its settings and the query.
                async with conn.pipeline(), conn.transaction():
                    await conn.execute(ANN_ONLY, (knob, str(value)))
                    cursor = await conn.execute(statement, [q, *values, q, k], binary=True)
                rows = await cursor.fetchall()
        return scored(rows, search.threshold)

    async def _ann_setting(
        self, conn: AsyncConnection[Any], table: str, search: SearchParams
    ) -> tuple[str, int]:
        """The pgvector setting and value an approximate `search` of `table` runs with."""
        lists = 1 if search.index_type == "hnsw" else await self._ivf_lists(conn, table)
        return ann_setting(search, self.index_params, lists)

    async def _small(self, conn: AsyncConnection[Any], table: str) -> bool:
        if table in self._large:
            return False
        cursor = await conn.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM memories WHERE table_name = %s"
            " AND embedding IS NOT NULL LIMIT %s) AS sample",
            (table, self.exact_below + 1),
        )
        row = await cursor.fetchone()
        small = row is not None and int(row[0]) <= self.exact_below
        if not small:
            self._large.add(table)
        return small

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        kind = check_index_type(index_type)
        table = table_name or DEFAULT_TABLE
        dim = await self.embedding_dimension(table)
        if kind == "flat" or dim is None:
            return
        delay = 0.05
        while True:
            async with self.with_connection() as conn:
                if await self._ensure_index(conn, kind, table, dim):
                    return
            await asyncio.sleep(delay)  # another caller builds: poll until it is done
            delay = min(delay * 2, 2.0)

    async def _ensure_index(
        self, conn: AsyncConnection[Any], kind: str, table: str, dim: int
    ) -> bool:
        """Make sure `table`'s `kind` index exists and is valid, building it if not; False when
        another caller (this process or another) is building one right now.

        Built with ``CREATE INDEX CONCURRENTLY``: writes to every memory table go on during a
        build (minutes for a big HNSW graph), where a plain CREATE INDEX blocked them all. One
        build at a time across processes, under a session advisory lock: concurrent builds on
        the one ``memories`` relation (of one name, or one's ANALYZE against another's build)
        deadlock. Searches arriving meanwhile do not queue for the lock holding connections;
        they are answered exactly until the index is there."""
        if (kind, table) in self._indexed:
            return True
        name = index_name(kind, table)
        await conn.commit()  # CREATE INDEX CONCURRENTLY runs outside any transaction
        await conn.set_autocommit(True)
        try:
            if await index_valid(conn, name) is True:
                self._indexed.add((kind, table))
                return True
            built = await build_locked(
                conn, kind, table, dim, name, self.index_params, self.index_build_memory
            )
            if not built:
                return False
        finally:
            await conn.set_autocommit(False)
        self._indexed.add((kind, table))
        return True

    async def _ivf_lists(self, conn: AsyncConnection[Any], table: str) -> int:
        lists = self._lists.get(table)
        if lists is None:
            cursor = await conn.execute(
                "SELECT ivf_lists FROM memory_tables WHERE table_name = %s", (table,)
            )
            row = await cursor.fetchone()
            if not (row and row[0]):
                return 1
            lists = self._lists[table] = int(row[0])
        return lists

    async def close(self) -> None:
        await self.pool.close()

    def __repr__(self) -> str:
        return f"PostgresAdapter({self.where!r})"
