"""pgvector index builds: one at a time across processes under a session advisory lock, with
``CREATE INDEX CONCURRENTLY`` so that writes go on meanwhile.

Functions of an autocommit connection; the adapter keeps which indexes it knows are there.
"""

from __future__ import annotations

import math
from typing import Any

from psycopg import AsyncConnection, sql

from host.storekit import IndexParams

from .schema import hnsw_index_sql, ivf_index_sql

__all__ = ["build_locked", "index_valid"]

_BUILD_LOCK_KEY = 0x61676E78  # "agnx": the advisory lock one index build at a time holds


async def index_valid(conn: AsyncConnection[Any], name: str) -> bool | None:
    """Whether index `name` of this schema is valid (None: there is none)."""
    cursor = await conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
        (name,),
    )
    row = await cursor.fetchone()
    return None if row is None else bool(row[0])


async def build_locked(
    conn: AsyncConnection[Any],
    kind: str,
    table: str,
    dim: int,
    name: str,
    params: IndexParams,
    build_memory: str | None,
) -> bool:
    """Build index `name` under the build lock (on an autocommit connection); False, building
    nothing, when another caller holds the lock."""
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_BUILD_LOCK_KEY,))
    row = await cursor.fetchone()
    if not (row and row[0]):
        return False
    try:
        if await _needs_build(conn, name):
            if kind == "hnsw":
                statement = hnsw_index_sql(table, dim, params.hnsw_m, params.hnsw_ef_construction)
            else:
                statement = await _ivf_statement(conn, table, dim, params)
            await _run_build(conn, statement, build_memory)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_BUILD_LOCK_KEY,))
    return True


async def _needs_build(conn: AsyncConnection[Any], name: str) -> bool:
    """Whether index `name` is still to build (checked again under the lock: another build may
    have finished); an invalid one, left by a concurrent build that died half-way, is dropped."""
    state = await index_valid(conn, name)
    if state is False:
        await conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
        )
    return state is not True


async def _run_build(
    conn: AsyncConnection[Any], statement: sql.Composed, build_memory: str | None
) -> None:
    """Run the CREATE INDEX `statement` with `build_memory` as ``maintenance_work_mem``, then
    ANALYZE for the row estimates of the plans that follow."""
    if build_memory is not None:
        # pgvector builds an HNSW graph many times faster while it fits in this memory
        # (PostgreSQL's default, 64MB, holds ~30k x 384-d); reset after the build.
        await conn.execute(
            sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(build_memory))
        )
    try:
        await conn.execute(statement)
    finally:
        if build_memory is not None:
            await conn.execute("RESET maintenance_work_mem")
    await conn.execute("ANALYZE memories")


async def _ivf_statement(
    conn: AsyncConnection[Any], table: str, dim: int, params: IndexParams
) -> sql.Composed:
    """The IVF index of `table`, its list count (set, or the square root of its vectors) kept
    in ``memory_tables`` for the searches' probes."""
    cursor = await conn.execute(
        "SELECT COUNT(*) FROM memories WHERE table_name = %s AND embedding IS NOT NULL",
        (table,),
    )
    row = await cursor.fetchone()
    count = int(row[0]) if row else 0
    lists = params.ivf_lists or max(1, int(math.sqrt(count)))
    await conn.execute(
        "UPDATE memory_tables SET ivf_lists = COALESCE(ivf_lists, %s) WHERE table_name = %s",
        (lists, table),
    )
    return ivf_index_sql(table, dim, lists)
