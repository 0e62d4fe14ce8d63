"""The PostgreSQL memory schema and its migrations, versioned in the database itself.

`migrate` runs under a transaction-level advisory lock, so several hosts starting against one
database apply each migration once; a database written by a newer agenthost is refused.
Embeddings are a ``vector`` column without a fixed dimension (each memory table fixes its own,
recorded in ``memory_tables``); the ANN indexes are partial expression indexes per memory table,
created by the adapter once that table's dimension is known (`hnsw_index_sql`, `ivf_index_sql`).
JSON is stored as ``json`` rather than ``jsonb`` so any string Python can hold (including NUL
characters, which ``jsonb`` refuses) round-trips unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection, sql

from contracts.storage import StorageError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "MigrationStep",
    "hnsw_index_sql",
    "index_name",
    "indexed_expression",
    "ivf_index_sql",
    "migrate",
]

_LOCK_KEY = 0x61676E74  # "agnt": the advisory lock serialising migrations

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "memories and per-table embedding dimensions",
        """
        CREATE EXTENSION IF NOT EXISTS vector;
        CREATE TABLE memory_tables (
            table_name text PRIMARY KEY,
            dimension integer,          -- fixed by the first embedding written
            ivf_lists integer           -- set once an IVF index exists
        );
        CREATE TABLE memories (
            id uuid PRIMARY KEY,
            table_name text NOT NULL,
            agent_id uuid NOT NULL,
            entity_id uuid NOT NULL,
            room_id uuid NOT NULL,
            created_at timestamptz NOT NULL,
            content json NOT NULL,
            metadata json NOT NULL,
            embedding vector,
            is_unique boolean NOT NULL DEFAULT false
        );
        CREATE INDEX memories_order ON memories (created_at, id);
        CREATE INDEX memories_table_order ON memories (table_name, created_at, id);
        CREATE INDEX memories_room_order ON memories (room_id, created_at, id);
        CREATE INDEX memories_agent_order ON memories (agent_id, created_at, id);
        CREATE INDEX memories_entity_order ON memories (entity_id, created_at, id);
        """,
    ),
    (
        2,
        "IVF indexes on an expression of their own (HNSW queries used them)",
        """
        DO $$
        DECLARE old record;
        BEGIN
            FOR old IN SELECT indexname FROM pg_indexes
                WHERE schemaname = current_schema() AND left(indexname, 13) = 'memories_ivf_'
            LOOP
                EXECUTE format('DROP INDEX %I', old.indexname);
            END LOOP;
        END $$;
        UPDATE memory_tables SET ivf_lists = NULL;
        """,
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]

MigrationStep = Callable[[int, int, str], None]
"""Told ``(n, of, description)`` before the n-th of `of` pending migrations runs."""


async def migrate(
    conn: AsyncConnection[Any], where: str, on_step: MigrationStep | None = None
) -> int:
    """Bring the schema up to `SCHEMA_VERSION`; returns the number of migrations applied.
    `on_step(n, of, description)` is called before each migration applied (``agenthost db
    migrate`` shows it as progress)."""
    applied = 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"the database at {where} has schema version {current}, newer than this "
                f"agenthost ({SCHEMA_VERSION}); upgrade agenthost"
            )
        pending = [m for m in MIGRATIONS if m[0] > current]
        for n, (version, description, statements) in enumerate(pending, 1):
            if on_step is not None:
                on_step(n, len(pending), description)
            await conn.execute(sql.SQL(statements))
            await conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                (version, description),
            )
            applied += 1
    return applied


def index_name(kind: str, table: str) -> str:
    """The name of memory table `table`'s `kind` index (tables may be named anything)."""
    digest = hashlib.sha1(table.encode()).hexdigest()[:12]
    return f"memories_{kind}_{digest}"


def indexed_expression(kind: str, dimension: int) -> sql.Composed:
    """The expression the `kind` ("hnsw" or "ivf") index of a table is built on, which a query
    must order by to use it.

    Each kind has its own: PostgreSQL picks among the indexes matching a query's expression by
    estimated cost, so over one shared expression an HNSW query could be answered by the IVF
    index (and the other way round). The IVF one goes through ``real[]`` and back: the same
    values, an expression only the IVF index is built on.
    """
    if kind == "hnsw":
        return sql.SQL("(embedding::vector({dim}))").format(dim=sql.Literal(dimension))
    return sql.SQL("((embedding::real[])::vector({dim}))").format(dim=sql.Literal(dimension))


def hnsw_index_sql(table: str, dimension: int, m: int, ef_construction: int) -> sql.Composed:
    """The HNSW (cosine) index of memory table `table`."""
    return sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON memories USING hnsw"
        " ({expression} vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})"
        " WHERE table_name = {table} AND embedding IS NOT NULL"
    ).format(
        name=sql.Identifier(index_name("hnsw", table)),
        expression=indexed_expression("hnsw", dimension),
        m=sql.Literal(m),
        ef=sql.Literal(ef_construction),
        table=sql.Literal(table),
    )


def ivf_index_sql(table: str, dimension: int, lists: int) -> sql.Composed:
    """The IVF-flat (cosine) index of memory table `table`."""
    return sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON memories USING ivfflat"
        " ({expression} vector_cosine_ops) WITH (lists = {lists})"
        " WHERE table_name = {table} AND embedding IS NOT NULL"
    ).format(
        name=sql.Identifier(index_name("ivf", table)),
        expression=indexed_expression("ivf", dimension),
        lists=sql.Literal(lists),
        table=sql.Literal(table),
    )
