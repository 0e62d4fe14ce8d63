"""Rows of the ``memories`` table: the column lists, INSERT and COPY statements, the WHERE clause
of a `MemoryQuery`, and a row read back as a `Memory` (or a scored one).

One place for the row layout, so that the writes, the reads and the searches agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pgvector import Vector as PgVector
from psycopg import sql

from contracts.memory import Memory, MemoryQuery
from contracts.vector import Vector
from host.storekit import (
    RowDecoder,
    content_from_json,
    lazy_memory,
    metadata_from_json,
    trusted_memory,
)

__all__ = [
    "COLUMNS",
    "COLUMNS_NO_EMBEDDING",
    "COPY",
    "COPY_FROM",
    "COPY_TYPES",
    "INSERT",
    "LAZY_FROM",
    "lazy_rows_to_memories",
    "row_to_memory",
    "scored",
    "where_clause",
]

COLUMNS = (
    "id, table_name, agent_id, entity_id, room_id, created_at, content::text, metadata::text,"
    " embedding, is_unique"
)
COLUMNS_NO_EMBEDDING = COLUMNS.replace(" embedding,", " NULL,")  # vectors left unread
INSERT = (
    "INSERT INTO memories (id, table_name, agent_id, entity_id, room_id, created_at, content,"
    " metadata, embedding, is_unique) VALUES (%s, %s, %s, %s, %s, %s, %s::json, %s::json, %s, %s)"
)
"""JSON goes as text serialised up front (a row that cannot be serialised fails where it is)."""
COPY = (
    "COPY memories (id, table_name, agent_id, entity_id, room_id, created_at, content, metadata,"
    " embedding, is_unique) FROM STDIN (FORMAT BINARY)"
)
COPY_TYPES = (
    # json's binary wire format is its text, so the serialised JSON goes as text.
    ["uuid", "text", "uuid", "uuid", "uuid", "timestamptz", "text", "text", "vector", "bool"]
)
COPY_FROM = 64
"""Batches of at least this many rows are written with binary COPY, smaller ones with
``executemany`` (COPY's setup costs more than it saves on a few rows)."""


def where_clause(query: MemoryQuery, *, keyset: bool = True) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause (empty when nothing filters) and its parameters for `query`; `keyset`
    False leaves its ``after`` cursor out."""
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


def scored(rows: Sequence[tuple[Any, ...]], threshold: float | None) -> list[tuple[Memory, float]]:
    """Rows ending in their cosine distance as (memory, score) best first, those scoring below
    `threshold` left out (a NaN distance, a zero vector's, scores 0 as on the other stores)."""
    results: list[tuple[Memory, float]] = []
    for row in rows:
        distance = row[-1]
        score = 0.0 if distance is None or math.isnan(distance) else 1.0 - distance
        if threshold is not None and score < threshold:
            continue
        results.append((row_to_memory(row[:-1]), score))
    results.sort(key=lambda pair: -pair[1])
    return results


def row_to_memory(row: tuple[Any, ...]) -> Memory:
    """A `Memory` from a ``SELECT {COLUMNS}`` row (trusted data: no re-validation)."""
    return trusted_memory(_fields(row))


def _fields(row: tuple[Any, ...]) -> dict[str, Any]:
    """A ``SELECT {COLUMNS}`` row as a memory's fields, in field order."""
    memory_id, table, agent, entity, room, created, content, metadata, embedding, unique = row
    return {
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


LAZY_FROM = 65
"""Reads of at least this many rows (pages, as on SQLite) return memories whose content, metadata,
embedding and time are decoded when first read (`lazy_rows_to_memories`); fewer rows (a room's
history, a search's) are what the caller reads at once, decoded now."""


def lazy_rows_to_memories(rows: Sequence[tuple[Any, ...]]) -> list[Memory]:
    """`row_to_memory`'s memories with their content, metadata, embedding and time decoded
    when one of them is first read (`host.storekit.lazy_memory`): what pages return."""
    return [
        lazy_memory(
            {
                "id": row[0],
                "agent_id": row[2],
                "entity_id": row[3],
                "room_id": row[4],
                "table_name": row[1],
                "unique": row[9],
            },
            _PAGE_ROW,
            row,
        )
        for row in rows
    ]


def _embedding_of(row: tuple[Any, ...]) -> Vector | None:
    embedding = row[8]
    return None if embedding is None else _vector(embedding)


def _created_of(row: tuple[Any, ...]) -> datetime:
    created: datetime = row[5]
    return created if created.tzinfo is UTC else created.astimezone(UTC)


_PAGE_ROW = RowDecoder(_fields, {"embedding": _embedding_of, "created_at": _created_of})
"""A page's row decoded whole, or only its vector or time when only those are read (its id
is read with the row)."""
