"""Writes of memories on a connection, inside the caller's transaction: create (INSERT or binary
COPY), update, and the ``memory_tables`` row locks that fix each table's vector dimension once.

Plain functions of a connection: the adapter runs them in its own transactions, cluster mode in
the one that also records a room's progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql

from contracts.memory import Memory, MemoryUpdate
from contracts.storage import BatchError, DimensionMismatchError, DuplicateMemoryError, StorageError
from host.storekit import content_json, float32_array, metadata_json

from .rows import COPY, COPY_FROM, COPY_TYPES, INSERT

__all__ = [
    "DimensionChanged",
    "create_on",
    "duplicate_error",
    "lock_tables",
    "stored_ids",
    "update_on",
]

_SET_DIMENSION = "UPDATE memory_tables SET dimension = %s WHERE table_name = %s"


async def lock_tables(
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
            "SELECT count(*) FROM memory_tables WHERE table_name = ANY(%s) AND dimension IS NULL",
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


async def stored_ids(conn: AsyncConnection[Any], batch: Sequence[Memory]) -> set[UUID]:
    """Which ids of `batch` are stored already."""
    cursor = await conn.execute(
        "SELECT id FROM memories WHERE id = ANY(%s)", ([m.id for m in batch],)
    )
    return {row[0] for row in await cursor.fetchall()}


async def create_on(
    conn: AsyncConnection[Any],
    batch: list[Memory],
    override: str | None,
    *,
    missing_only: bool = False,
    known: dict[str, int] | None = None,
) -> list[UUID]:
    """Insert `batch` (into table `override` when given) on `conn`; with `missing_only`, those
    whose ids are not stored yet. Returns the ids written; raises `BatchError` naming the first
    memory that cannot be written (a duplicate id, another dimension).

    `known`: the caller's record of tables' dimensions, which this keeps up to date; with
    `missing_only` and every table of the batch in it, the write waits for one answer instead
    of four (`_create_known`)."""
    tables = {override or m.table_name for m in batch}
    if missing_only and known is not None and tables <= known.keys() and len(batch) < COPY_FROM:
        written = await _create_known(conn, batch, override, tables, known)
        if written is not None:
            return written
    dims = await lock_tables(
        conn, tables, {override or m.table_name for m in batch if m.embedding is not None}
    )
    existing = await stored_ids(conn, batch)
    if missing_only:
        batch = [m for m in batch if m.id not in existing]
        if not batch:
            return []
    rows, fixed = _memory_rows(batch, override, dims, existing)
    await _insert(conn, rows)
    for table, dim in fixed.items():
        await conn.execute(_SET_DIMENSION, (dim, table))
    if known is not None:
        known.update({table: dim for table, dim in dims.items() if dim is not None})
    return [m.id for m in batch]


class DimensionChanged(StorageError):
    """A memory table's dimension changed since it was recorded (a reset of its embeddings):
    the transaction must be rolled back and written again."""


async def _create_known(
    conn: AsyncConnection[Any],
    batch: list[Memory],
    override: str | None,
    tables: set[str],
    known: dict[str, int],
) -> list[UUID] | None:
    """`create_on` with `missing_only` when every table's dimension is `known`: the rows are
    checked against those dimensions here, the tables' rows locked for share and the rows
    inserted (ids stored already are skipped by the insert itself) without waiting; one answer
    then shows the dimensions under the lock, which must still be the known ones (else
    `DimensionChanged`, the record forgotten: written again, the slow way). None when the
    batch does not fit the record (the slow way finds what is wrong)."""
    try:
        rows, _fixed = _memory_rows(batch, override, dict(known), set())
    except BatchError:
        return None
    locked = await conn.execute(
        "SELECT table_name, dimension FROM memory_tables WHERE table_name = ANY(%s)"
        " ORDER BY table_name FOR SHARE",
        (sorted(tables),),
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            INSERT + " ON CONFLICT (id) DO NOTHING RETURNING id", rows, returning=True
        )
        now = {row[0]: row[1] for row in await locked.fetchall()}
        if any(now.get(table) != known[table] for table in tables):
            for table in tables:
                known.pop(table, None)
            raise DimensionChanged(
                f"the embedding dimension of memory table(s) {', '.join(sorted(tables))} changed"
                " while writing (embeddings reset): write again"
            )
        written: list[UUID] = []
        while True:
            written += [row[0] for row in await cur.fetchall()]
            if not cur.nextset():
                return written


def _memory_rows(
    batch: list[Memory], override: str | None, dims: dict[str, int | None], existing: set[UUID]
) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """The INSERT rows of `batch`, and the dimensions this batch fixes (tables without one)."""
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
    return rows, fixed


async def _insert(conn: AsyncConnection[Any], rows: list[tuple[Any, ...]]) -> None:
    """Write `rows`: binary COPY for `COPY_FROM` rows or more, ``executemany`` below."""
    async with conn.cursor() as cur:
        if len(rows) >= COPY_FROM:
            async with cur.copy(COPY) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    await copy.write_row(row)
        else:
            await cur.executemany(INSERT, rows)


def duplicate_error(batch: list[Memory], existing: set[UUID]) -> BatchError:
    """The `BatchError` of a batch that hit a unique violation: the first memory whose id is in
    `existing` (stored by a concurrent writer)."""
    for index, memory in enumerate(batch):
        if memory.id in existing:
            return BatchError("create_memories_batch", index, DuplicateMemoryError(memory.id))
    return BatchError("create_memories_batch", 0, StorageError("unique violation"))


async def update_on(conn: AsyncConnection[Any], updates: Sequence[MemoryUpdate]) -> list[bool]:
    """Apply `updates` on `conn`; for each, whether its memory was found. Raises `BatchError`
    naming the first update that cannot be applied."""
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
    dims = await lock_tables(conn, set(tables_of.values()), embedded) if tables_of else {}
    found: list[bool] = []
    for index, update in enumerate(batch):
        try:
            table = tables_of.get(update.id)
            if table is not None:
                await _update_one(conn, update, table, dims)
            found.append(table is not None)
        except (StorageError, TypeError, ValueError) as exc:
            raise BatchError("update_memories_batch", index, exc) from exc
    return found


async def _update_one(
    conn: AsyncConnection[Any], update: MemoryUpdate, table: str, dims: dict[str, int | None]
) -> None:
    """Apply one `update` to its stored memory (of `table`), fixing the table's dimension when
    the update gives its first embedding."""
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
        sets.append(sql.SQL("embedding = %s"))
        params.append(await _new_embedding(conn, update, table, dims))
    if sets:
        statement = sql.SQL("UPDATE memories SET {} WHERE id = %s").format(sql.SQL(", ").join(sets))
        await conn.execute(statement, (*params, update.id))


async def _new_embedding(
    conn: AsyncConnection[Any], update: MemoryUpdate, table: str, dims: dict[str, int | None]
) -> Any:
    """The vector to store for `update` (None clears it), checked against the table's dimension
    (fixed here when the table has none yet)."""
    if update.embedding is None:
        return None
    got = len(update.embedding)
    dim = dims.get(table)
    if dim is None:
        dims[table] = got
        await conn.execute(_SET_DIMENSION, (got, table))
    elif got != dim:
        raise DimensionMismatchError(table, dim, got)
    return float32_array(update.embedding)
