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
import math
from collections.abc import AsyncIterator, Sequence
from datetime import UTC
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from loguru import logger
from pgvector import Vector as PgVector
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import (
    DEFAULT_SEARCH,
    BatchError,
    DimensionMismatchError,
    DuplicateMemoryError,
    IndexType,
    PoolExhaustedError,
    RoomSummary,
    SearchParams,
    StorageError,
    StorageUnavailableError,
    sort_rooms,
)
from contracts.vector import Vector
from host.storekit import (
    IndexParams,
    check_index_type,
    check_search,
    check_table_name,
    content_from_json,
    content_json,
    describe_url,
    float32_array,
    metadata_from_json,
    metadata_json,
    pooled,
    query_vector,
    safe_text,
    trusted_memory,
    unbatched,
)

from .plugin import INDEX_BUILD_MEMORY
from .schema import (
    MigrationStep,
    hnsw_index_sql,
    index_name,
    indexed_expression,
    ivf_index_sql,
    migrate,
)

__all__ = ["PostgresAdapter", "describe_url"]

_COLUMNS = (
    "id, table_name, agent_id, entity_id, room_id, created_at, content::text, metadata::text,"
    " embedding, is_unique"
)
_COLUMNS_NO_EMBEDDING = _COLUMNS.replace(" embedding,", " NULL,")  # vectors left unread
_INSERT = (
    "INSERT INTO memories (id, table_name, agent_id, entity_id, room_id, created_at, content,"
    " metadata, embedding, is_unique) VALUES (%s, %s, %s, %s, %s, %s, %s::json, %s::json, %s, %s)"
)
"""JSON goes as text serialised up front (a row that cannot be serialised fails where it is)."""
_COPY = (
    "COPY memories (id, table_name, agent_id, entity_id, room_id, created_at, content, metadata,"
    " embedding, is_unique) FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = (
    # json's binary wire format is its text, so the serialised JSON goes as text.
    ["uuid", "text", "uuid", "uuid", "uuid", "timestamptz", "text", "text", "vector", "bool"]
)
COPY_FROM = 64
"""Batches of at least this many rows are written with binary COPY, smaller ones with
``executemany`` (COPY's setup costs more than it saves on a few rows)."""
EXACT_BELOW = 20_000
_ANN_ONLY = (
    # The index asked for, not the planner's pick: with stale statistics (a table just
    # bulk-loaded) it scans and sorts every row instead. One statement: a pipeline sends each
    # statement on its own (extended protocol), and these settings last until the commit.
    "SELECT set_config(%s, %s, true), set_config('enable_seqscan', 'off', true),"
    " set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)"
)
HNSW_MAX_EF_SEARCH = 1000
"""pgvector's upper bound of ``hnsw.ef_search``; an HNSW scan returns at most that many rows, so a
search for more is answered exactly."""
IVF_MAX_PROBES = 32768
"""pgvector's upper bound of ``ivfflat.probes`` (and of the lists an index can have)."""
_BUILD_LOCK_KEY = 0x61676E78  # "agnx": the advisory lock one index build at a time holds
"""Candidate sets up to this size are searched exactly whatever the index type."""


def _exhausted(message: str) -> PoolExhaustedError:
    return PoolExhaustedError(f"{message} (raise plugins.postgres.pool_max or acquire_timeout)")


def _where(query: MemoryQuery, *, keyset: bool = True) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (
        ("agent_id", query.agent_id),
        ("entity_id", query.entity_id),
        ("room_id", query.room_id),
        ("table_name", query.table_name),
        ("is_unique", query.unique),
    ):
        if value is not None:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if query.start is not None:
        parts.append(sql.SQL("created_at >= %s"))
        params.append(query.start)
    if query.end is not None:
        parts.append(sql.SQL("created_at < %s"))
        params.append(query.end)
    if keyset and query.after is not None:
        op = ">" if query.order == "asc" else "<"
        parts.append(sql.SQL(f"(created_at, id) {op} (%s, %s)"))
        params.extend((query.after.created_at, query.after.id))
    if not parts:
        return sql.SQL(""), params
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params


def _vector(value: Any) -> Vector:
    """A pgvector value (its ``Vector`` in binary mode, an ndarray in text mode) as a `Vector`:
    in binary mode the array pgvector decoded into, without a copy."""
    if isinstance(value, PgVector):
        return Vector.wrap(value.to_numpy())
    return Vector.wrap(np.array(value, dtype=np.float32))


def _scored(rows: Sequence[tuple[Any, ...]], threshold: float | None) -> list[tuple[Memory, float]]:
    """Rows ending in their cosine distance as (memory, score) best first, those scoring below
    `threshold` left out (a NaN distance, a zero vector's, scores 0 as on the other stores)."""
    results: list[tuple[Memory, float]] = []
    for row in rows:
        distance = row[-1]
        score = 0.0 if distance is None or math.isnan(distance) else 1.0 - distance
        if threshold is not None and score < threshold:
            continue
        results.append((_row_to_memory(row[:-1]), score))
    results.sort(key=lambda pair: -pair[1])
    return results


def _row_to_memory(row: tuple[Any, ...]) -> Memory:
    """A `Memory` from a ``SELECT {_COLUMNS}`` row (trusted data: no re-validation)."""
    memory_id, table, agent, entity, room, created, content, metadata, embedding, unique = row
    return trusted_memory(
        {
            "id": memory_id,
            "agent_id": agent,
            "entity_id": entity,
            "room_id": room,
            "table_name": table,
            "content": content_from_json(content),
            "embedding": None if embedding is None else _vector(embedding),
            "metadata": metadata_from_json(metadata),
            # psycopg gives timestamptz in the session's time zone: the contract says UTC
            "created_at": created if created.tzinfo is UTC else created.astimezone(UTC),
            "unique": unique,
        }
    )


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
        try:
            # whole seconds, rounded up: psycopg reads 0 (a truncated 0.5) as its 130 s default
            async with await AsyncConnection.connect(
                url, connect_timeout=max(1, math.ceil(connect_timeout))
            ) as conn:
                await migrate(conn, where, on_migration)
        except psycopg.Error as exc:
            hint = missing_vector_hint(exc)
            if hint is not None:  # the server answers, but cannot serve vectors
                raise StorageError(f"cannot open PostgreSQL at {where}: {hint}") from None
            raise StorageUnavailableError(
                f"cannot open PostgreSQL at {where}: {safe_text(exc, url)}"
            ) from None

        def reconnect_failed(pool: AsyncConnectionPool) -> None:
            logger.warning(
                "PostgreSQL at {} unreachable for {} s: the pool stops reconnecting until asked",
                where,
                reconnect_timeout,
            )

        pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=register_vector_async,
            check=AsyncConnectionPool.check_connection if check_connections else None,
            timeout=acquire_timeout,
            max_idle=max_idle,
            max_lifetime=max_lifetime,
            reconnect_timeout=reconnect_timeout,
            reconnect_failed=reconnect_failed,
            name=f"agenthost {where}",
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise StorageError(f"cannot open a connection pool to {where}: {exc}") from None
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
            self.pool, unavailable=StorageUnavailableError, exhausted=_exhausted
        ) as conn:
            yield conn

    # -- tables ---------------------------------------------------------------------------------

    @staticmethod
    async def _lock_tables(
        conn: AsyncConnection[Any], tables: set[str], embedded: set[str]
    ) -> dict[str, int | None]:
        """The dimensions of `tables`, their rows locked until the commit: for update when
        this write may fix a dimension (an embedding for a table without one yet, in
        `embedded`), so two first writers cannot fix different ones; otherwise for share, so
        that writers to a table run at once (a reset, which updates the row, waits for them)."""
        names = sorted(tables)
        await conn.execute(
            "INSERT INTO memory_tables (table_name) SELECT unnest(%s::text[])"
            " ON CONFLICT (table_name) DO NOTHING",
            (names,),
        )
        mode = "FOR SHARE"
        if embedded:
            cursor = await conn.execute(
                "SELECT count(*) FROM memory_tables WHERE table_name = ANY(%s)"
                " AND dimension IS NULL",
                (sorted(embedded),),
            )
            row = await cursor.fetchone()
            if row is not None and row[0]:
                mode = "FOR UPDATE"
        cursor = await conn.execute(
            sql.SQL(
                "SELECT table_name, dimension FROM memory_tables WHERE table_name = ANY(%s)"
                " ORDER BY table_name "
            )
            + sql.SQL(mode),
            (names,),
        )
        return {row[0]: row[1] for row in await cursor.fetchall()}

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
        return await self._create(conn, list(memories), None, missing_only=True)

    async def _create(
        self,
        conn: AsyncConnection[Any],
        batch: list[Memory],
        override: str | None,
        *,
        missing_only: bool = False,
    ) -> list[UUID]:
        dims = await self._lock_tables(
            conn,
            {override or m.table_name for m in batch},
            {override or m.table_name for m in batch if m.embedding is not None},
        )
        cursor = await conn.execute(
            "SELECT id FROM memories WHERE id = ANY(%s)", ([m.id for m in batch],)
        )
        existing = {row[0] for row in await cursor.fetchall()}
        if missing_only:
            batch = [m for m in batch if m.id not in existing]
            if not batch:
                return []
        fixed: dict[str, int] = {}
        seen: set[UUID] = set()
        rows: list[tuple[Any, ...]] = []
        for index, memory in enumerate(batch):
            try:
                table = override or memory.table_name
                if memory.id in existing or memory.id in seen:
                    raise DuplicateMemoryError(memory.id)
                seen.add(memory.id)
                vector = None
                if memory.embedding is not None:
                    got = len(memory.embedding)
                    dim = dims.get(table)
                    if dim is None:
                        dims[table] = fixed[table] = got
                    elif got != dim:
                        raise DimensionMismatchError(table, dim, got)
                    vector = float32_array(memory.embedding)
                rows.append(
                    (
                        memory.id,
                        table,
                        memory.agent_id,
                        memory.entity_id,
                        memory.room_id,
                        memory.created_at,
                        content_json(memory.content),
                        metadata_json(memory.metadata),
                        vector,
                        memory.unique,
                    )
                )
            except (StorageError, TypeError, ValueError) as exc:
                raise BatchError("create_memories_batch", index, exc) from exc
        async with conn.cursor() as cur:
            if len(rows) >= COPY_FROM:
                async with cur.copy(_COPY) as copy:
                    copy.set_types(_COPY_TYPES)
                    for row in rows:
                        await copy.write_row(row)
            else:
                await cur.executemany(_INSERT, rows)
        for table, dim in fixed.items():
            await conn.execute(
                "UPDATE memory_tables SET dimension = %s WHERE table_name = %s", (dim, table)
            )
        return [m.id for m in batch]

    async def _duplicate_error(self, batch: list[Memory]) -> BatchError:
        async with self.with_connection() as conn:
            cursor = await conn.execute(
                "SELECT id FROM memories WHERE id = ANY(%s)", ([m.id for m in batch],)
            )
            existing = {row[0] for row in await cursor.fetchall()}
        for index, memory in enumerate(batch):
            if memory.id in existing:
                return BatchError("create_memories_batch", index, DuplicateMemoryError(memory.id))
        return BatchError("create_memories_batch", 0, StorageError("unique violation"))

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
        batch = list(updates)
        if not batch:
            return []
        cursor = await conn.execute(
            "SELECT id, table_name FROM memories WHERE id = ANY(%s)", ([u.id for u in batch],)
        )
        tables_of = {row[0]: row[1] for row in await cursor.fetchall()}
        embedded = {
            tables_of[u.id]
            for u in batch
            if u.id in tables_of and "embedding" in u.changes and u.embedding is not None
        }
        dims = await self._lock_tables(conn, set(tables_of.values()), embedded) if tables_of else {}
        found: list[bool] = []
        for index, update in enumerate(batch):
            try:
                table = tables_of.get(update.id)
                if table is None:
                    found.append(False)
                    continue
                sets: list[sql.Composable] = []
                params: list[Any] = []
                changes = update.changes
                if "content" in changes and update.content is not None:
                    sets.append(sql.SQL("content = %s::json"))
                    params.append(content_json(update.content))
                if "metadata" in changes and update.metadata is not None:
                    sets.append(sql.SQL("metadata = %s::json"))
                    params.append(metadata_json(update.metadata))
                if "unique" in changes and update.unique is not None:
                    sets.append(sql.SQL("is_unique = %s"))
                    params.append(update.unique)
                if "embedding" in changes:
                    vector = None
                    if update.embedding is not None:
                        got = len(update.embedding)
                        dim = dims.get(table)
                        if dim is None:
                            dims[table] = got
                            await conn.execute(
                                "UPDATE memory_tables SET dimension = %s WHERE table_name = %s",
                                (got, table),
                            )
                        elif got != dim:
                            raise DimensionMismatchError(table, dim, got)
                        vector = float32_array(update.embedding)
                    sets.append(sql.SQL("embedding = %s"))
                    params.append(vector)
                if sets:
                    statement = sql.SQL("UPDATE memories SET {} WHERE id = %s").format(
                        sql.SQL(", ").join(sets)
                    )
                    await conn.execute(statement, (*params, update.id))
                found.append(True)
            except (StorageError, TypeError, ValueError) as exc:
                raise BatchError("update_memories_batch", index, exc) from exc
        return found

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
                sql.SQL("SELECT " + _COLUMNS + " FROM memories WHERE id = %s"),
                (memory_id,),
                binary=True,
            )
            row = await cursor.fetchone()
        return None if row is None else _row_to_memory(row)

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        where, params = _where(query)
        direction = sql.SQL("ASC" if query.order == "asc" else "DESC")
        columns = _COLUMNS if query.with_embeddings else _COLUMNS_NO_EMBEDDING
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
        async with self.with_connection() as conn:
            cursor = await conn.execute(statement, params, binary=True)
            rows = await cursor.fetchall()
        return [_row_to_memory(row) for row in rows]

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        where, params = _where(query or MemoryQuery())
        statement = sql.SQL("SELECT COUNT(*) FROM memories{}").format(where)
        async with self.with_connection() as conn:
            cursor = await conn.execute(statement, params)
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        where, params = _where(query or MemoryQuery(), keyset=False)
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
        where, values = _where(scoped, keyset=False)
        where = (where + sql.SQL(" AND ") if values else sql.SQL(" WHERE ")) + sql.SQL(
            "embedding IS NOT NULL"
        )
        columns = _COLUMNS if search.with_embeddings else _COLUMNS_NO_EMBEDDING
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
                # pgvector's cosine distance to a zero vector is NaN, which sorts after every
                # number; the other stores score it 0 (distance 1), and so does this one. The
                # top k are chosen from (id, distance) pairs and only their rows read after:
                # sorting whole rows dragged every 1.5 KB vector through the sort.
                statement = sql.SQL(
                    "SELECT " + columns + ", top.distance FROM (SELECT id,"
                    " COALESCE(NULLIF(embedding <=> %s, 'NaN'::float8), 1.0) AS distance"
                    " FROM memories{w} ORDER BY distance, id LIMIT %s) AS top"
                    " JOIN memories USING (id) ORDER BY top.distance, id"
                ).format(w=where)
                cursor = await conn.execute(statement, [q, *values, k], binary=True)
                rows = await cursor.fetchall()
            else:
                knob, value = await self._ann_setting(conn, table, search)
                distance = sql.SQL("({e} <=> %s::vector({dim}))").format(
                    e=indexed_expression(kind, dim), dim=sql.Literal(dim)
                )
                statement = sql.SQL(
                    "SELECT " + columns + ", {d} AS distance FROM memories{w} ORDER BY {d} LIMIT %s"
                ).format(d=distance, w=where)
                # One round trip for the transaction, its settings and the query.
                async with conn.pipeline(), conn.transaction():
                    await conn.execute(_ANN_ONLY, (knob, str(value)))
                    cursor = await conn.execute(statement, [q, *values, q, k], binary=True)
                rows = await cursor.fetchall()
        return _scored(rows, search.threshold)

    async def _ann_setting(
        self, conn: AsyncConnection[Any], table: str, search: SearchParams
    ) -> tuple[str, int]:
        """The pgvector setting and value an approximate `search` of `table` runs with."""
        if search.index_type == "hnsw":
            ef = max(search.ef_search or self.index_params.hnsw_ef_search or 64, search.k)
            return "hnsw.ef_search", min(ef, HNSW_MAX_EF_SEARCH)
        lists = await self._ivf_lists(conn, table)
        nprobe = search.probes or self.index_params.ivf_probes or max(1, lists // 8)
        return "ivfflat.probes", min(nprobe, IVF_MAX_PROBES)

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
            if await self._index_valid(conn, name) is True:
                self._indexed.add((kind, table))
                return True
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_BUILD_LOCK_KEY,))
            row = await cursor.fetchone()
            if not (row and row[0]):
                return False
            try:
                await self._build_index(conn, kind, table, dim, name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_BUILD_LOCK_KEY,))
        finally:
            await conn.set_autocommit(False)
        self._indexed.add((kind, table))
        return True

    @staticmethod
    async def _index_valid(conn: AsyncConnection[Any], name: str) -> bool | None:
        """Whether index `name` of this schema is valid (None: there is none)."""
        cursor = await conn.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
            (name,),
        )
        row = await cursor.fetchone()
        return None if row is None else bool(row[0])

    async def _build_index(
        self, conn: AsyncConnection[Any], kind: str, table: str, dim: int, name: str
    ) -> None:
        """Build index `name` (under the build lock, on an autocommit connection)."""
        state = await self._index_valid(conn, name)  # again: another build may have finished
        if state is True:
            return
        if state is False:  # a concurrent build that died half-way leaves an invalid index
            await conn.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
            )
        if kind == "hnsw":
            statement = hnsw_index_sql(
                table, dim, self.index_params.hnsw_m, self.index_params.hnsw_ef_construction
            )
        else:
            cursor = await conn.execute(
                "SELECT COUNT(*) FROM memories WHERE table_name = %s AND embedding IS NOT NULL",
                (table,),
            )
            row = await cursor.fetchone()
            count = int(row[0]) if row else 0
            lists = self.index_params.ivf_lists or max(1, int(math.sqrt(count)))
            statement = ivf_index_sql(table, dim, lists)
            await conn.execute(
                "UPDATE memory_tables SET ivf_lists = COALESCE(ivf_lists, %s)"
                " WHERE table_name = %s",
                (lists, table),
            )
        memory = self.index_build_memory
        if memory is not None:
            # pgvector builds an HNSW graph many times faster while it fits in this memory
            # (PostgreSQL's default, 64MB, holds ~30k x 384-d); reset after the build.
            await conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(memory)))
        try:
            await conn.execute(statement)
        finally:
            if memory is not None:
                await conn.execute("RESET maintenance_work_mem")
        await conn.execute("ANALYZE memories")  # row estimates for the plans that follow

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


VECTOR_HINT = (
    "the server has no pgvector extension (CREATE EXTENSION vector failed). Install it on the"
    " server (https://github.com/pgvector/pgvector#installation; Debian/Ubuntu: the"
    " postgresql-<version>-pgvector package from apt.postgresql.org, which Debian's own"
    " repository lacks), or run `agenthost db start` for a local PostgreSQL with pgvector"
    " (pip install 'agenthost[pgserver]') and use the URL it prints"
)


def missing_vector_hint(exc: BaseException) -> str | None:
    """`VECTOR_HINT` when `exc` says the server cannot create the ``vector`` extension (its
    control file is not installed), else None."""
    text = str(exc)
    if '"vector"' in text and ("is not available" in text or "control file" in text):
        return VECTOR_HINT
    return None
