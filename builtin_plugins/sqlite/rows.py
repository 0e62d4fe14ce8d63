"""SQL text and row codecs of the SQLite store: the memories table's columns, WHERE clauses of
a `MemoryQuery`, timestamps as integer microseconds, rows decoded to `Memory` without
re-validation, and each table's dimension and version (`memory_tables`).

Kept apart from the adapter's methods so that reads, writes and searches share one encoding.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, SafeUUID

import numpy as np
from pydantic_core import from_json

from contracts.memory import Memory, MemoryQuery
from contracts.vector import Vector
from host.storekit import (
    RowDecoder,
    content_from_json,
    float32_bytes,
    lazy_memory,
    metadata_from_json,
    trusted_memory,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = (
    "seq, id, table_name, agent_id, entity_id, room_id, created_at, content, metadata,"
    " embedding, is_unique"
)
INSERT = (
    "INSERT INTO memories (id, table_name, agent_id, entity_id, room_id, created_at, content,"
    " metadata, embedding, is_unique) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
COLUMNS_NO_EMBEDDING = COLUMNS.replace(" embedding,", " NULL,")  # vectors left unread
# the table's version as a last column: rows and version from one statement, one snapshot
_VERSION = ", (SELECT version FROM memory_tables WHERE table_name = ?)"
_IN_MARKS = 256
"""Up to this many seqs are read with ``IN (?, ...)``, more as one JSON list (``json_each``):
the virtual table cost ~40 us more for a search's 10 rows, and the statement for each count is
prepared once (sqlite3's statement cache)."""


@functools.lru_cache(maxsize=256)
def by_seqs_sql(count: int, *, versioned: bool, vectors: bool, excluded: int = 0) -> str:
    """``SELECT {COLUMNS}`` of `count` seqs (the version last if `versioned`: its table is the
    first parameter), the embedding column NULL unless `vectors`, leaving out the rows of
    `excluded` ids (the last parameters)."""
    columns = COLUMNS if vectors else COLUMNS_NO_EMBEDDING
    if versioned:
        columns += _VERSION
    seqs = "SELECT value FROM json_each(?)" if count > _IN_MARKS else ",".join("?" * count)
    left_out = f" AND id NOT IN ({','.join('?' * excluded)})" if excluded else ""
    return f"SELECT {columns} FROM memories WHERE seq IN ({seqs}){left_out}"


def seq_params(labels: list[int]) -> list[Any] | tuple[str]:
    return labels if len(labels) <= _IN_MARKS else (json.dumps(labels),)


CHUNK = 500  # ids per IN (...) list, well under SQLite's variable limit
embedding_blob = float32_bytes  # float32 little-endian blob of an embedding


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, no float rounding)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime `micros` microseconds after the epoch: built from its second's
    calendar fields, kept per second (rows read together are mostly seconds apart at most),
    a third cheaper than adding a timedelta to the epoch."""
    seconds, fraction = divmod(micros, 1_000_000)
    return _datetime(*(_seconds.get(seconds) or _second(seconds)), fraction, UTC)


_datetime = datetime
_seconds: dict[int, tuple[int, int, int, int, int, int]] = {}
_SECONDS_KEPT = 4096


def _second(seconds: int) -> tuple[int, int, int, int, int, int]:
    at = _EPOCH + timedelta(0, seconds)
    fields = (at.year, at.month, at.day, at.hour, at.minute, at.second)
    if len(_seconds) >= _SECONDS_KEPT:
        _seconds.clear()
    _seconds[seconds] = fields
    return fields


@functools.lru_cache(maxsize=4096)
def uuid_of(raw: bytes) -> UUID:
    """UUIDs of agents, rooms and entities repeat across rows: parse each once."""
    return UUID(bytes=raw)


def where_clause(query: MemoryQuery, *, keyset: bool = True) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` text and parameters for `query`'s filters (and its cursor if `keyset`)."""
    parts: list[str] = []
    params: list[Any] = []
    # A room's rows are few of its agent's or its table's: with a room given, the agent and
    # table terms are kept off the planner's index choice (a unary +), which otherwise walks
    # the agent's index, every room's rows, to find one room's latest (100 rooms: 100x).
    wide = "+" if query.room_id is not None else ""
    for column, value in (
        (wide + "agent_id", query.agent_id),
        ("entity_id", query.entity_id),
        ("room_id", query.room_id),
    ):
        if value is not None:
            parts.append(f"{column} = ?")
            params.append(value.bytes)
    if query.table_name is not None:
        parts.append(wide + "table_name = ?")
        params.append(query.table_name)
    if query.start is not None:
        parts.append("created_at >= ?")
        params.append(to_micros(query.start))
    if query.end is not None:
        parts.append("created_at < ?")
        params.append(to_micros(query.end))
    if query.unique is not None:
        parts.append("is_unique = ?")
        params.append(int(query.unique))
    if keyset and query.after is not None:
        parts.append(f"(created_at, id) {'>' if query.order == 'asc' else '<'} (?, ?)")
        params.extend((to_micros(query.after.created_at), query.after.id.bytes))
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


_vector = Vector.from_bytes  # the stored blob itself, no copy: ~0.3 us where floats took ~10
_new = object.__new__
# UUID's slots, set through their descriptors (UUID.__setattr__ refuses; object.__setattr__
# costs more)
_set_int = UUID.__dict__["int"].__set__
_set_safe = UUID.__dict__["is_safe"].__set__
_from_bytes = int.from_bytes
_UNKNOWN = SafeUUID.unknown


def row_uuid(raw: bytes) -> UUID:
    """``UUID(bytes=raw)`` without its argument checks (16 bytes from our own column)."""
    value = _new(UUID)
    _set_int(value, _from_bytes(raw, "big"))
    _set_safe(value, _UNKNOWN)
    return value


def row_to_memory(row: tuple[Any, ...]) -> Memory:
    """A `Memory` from a ``SELECT {COLUMNS}`` row, columns past those ignored (trusted data:
    no re-validation)."""
    return trusted_memory(_fields(row))


def _fields(row: tuple[Any, ...]) -> dict[str, Any]:
    """A ``SELECT {COLUMNS}`` row as a memory's fields, in field order."""
    embedding = row[9]
    return {
        "id": row_uuid(row[1]),
        "agent_id": uuid_of(row[3]),
        "entity_id": uuid_of(row[4]),
        "room_id": uuid_of(row[5]),
        "table_name": row[2],
        "content": content_from_json(row[7]),
        "embedding": None if embedding is None else _vector(embedding),
        "metadata": metadata_from_json(row[8]),
        "created_at": from_micros(row[6]),
        "unique": row[10] == 1,
    }


def content_text(text: str) -> str:
    """``content_from_json(text).text`` without building the `Content`: the stored JSON's
    ``text`` when it is a string (what every store writes), else what the validator gives."""
    try:
        fields = from_json(text)
    except ValueError:
        return content_from_json(text).text
    value = fields.get("text") if type(fields) is dict else None
    return value if type(value) is str else content_from_json(text).text


def lazy_rows_to_memories(rows: Iterable[tuple[Any, ...]]) -> list[Memory]:
    """`row_to_memory`'s memories with their id, content, metadata, embedding and time decoded
    when one of them is first read (`host.storekit.lazy_memory`): what pages of many rows
    return. Agent, entity and room (the same few objects on every row: `uuid_of`), the table
    and the flag are read now. One loop, the row's steps inline: a page makes a thousand."""
    memories: list[Memory] = []
    append = memories.append
    for row in rows:
        values = {
            "agent_id": uuid_of(row[3]),
            "entity_id": uuid_of(row[4]),
            "room_id": uuid_of(row[5]),
            "table_name": row[2],
            "unique": row[10] == 1,
        }
        append(_lazy(values, _PAGE_ROW, row))
    return memories


_lazy = lazy_memory


def lazy_row_to_memory(row: tuple[Any, ...]) -> Memory:
    """`lazy_rows_to_memories` of one row: a search's hit. Decoded at once, the 10 hits of
    an HNSW search cost ~40 us (their contents, times, metadata, ids and vectors: an eighth
    of the search, work the raw SELECT it stands for does not do); whoever reads a hit now
    decodes what it reads (a hit's vector alone, or the whole row at its first other field:
    `bench/storage.py --only breakdown` prints both)."""
    values = {
        "agent_id": uuid_of(row[3]),
        "entity_id": uuid_of(row[4]),
        "room_id": uuid_of(row[5]),
        "table_name": row[2],
        "unique": row[10] == 1,
    }
    return _lazy(values, _PAGE_ROW, row)


def _embedding_of(row: tuple[Any, ...]) -> Vector | None:
    embedding = row[9]
    return None if embedding is None else _vector(embedding)


_PAGE_ROW = RowDecoder(
    _fields,
    {
        "embedding": _embedding_of,
        "id": lambda row: row_uuid(row[1]),
        "created_at": lambda row: from_micros(row[6]),
    },
)
"""A page's row decoded whole, or only its vector, id or time when only those are read (a
page read for its vectors, or for its last cursor)."""


def table_state(conn: sqlite3.Connection, table: str) -> tuple[int | None, int]:
    """`table`'s (dimension, version): (None, 0) for a table never written."""
    row = conn.execute(
        "SELECT dimension, version FROM memory_tables WHERE table_name = ?", (table,)
    ).fetchone()
    return (None, 0) if row is None else (row[0], row[1])


BUMP = (
    "INSERT INTO memory_tables (table_name, dimension, version) VALUES (?, ?, 1)"
    " ON CONFLICT (table_name) DO UPDATE SET version = version + 1,"
    " dimension = COALESCE(dimension, excluded.dimension) RETURNING version, dimension"
)
"""Bump a table's version by one (a table never written gets version 1; versions only ever
go up by one, so the version before is the one returned minus 1), setting its dimension if it
had none; the new version and the table's dimension."""


BUMP_ANY = "UPDATE memory_tables SET version = version + 1 WHERE table_name = ?"
BUMP_SAME = BUMP_ANY + " AND dimension = ?"
"""`BUMP` for a table already written (`BUMP_ANY`) whose dimension is the row's (`BUMP_SAME`),
without ``RETURNING`` (~12 us cheaper in the pipeline): its row count says whether it bumped (0:
a new table, no dimension yet, another dimension: `BUMP` then); `VERSION` reads the version."""
VERSION = "SELECT version FROM memory_tables WHERE table_name = ?"


def bump_version(conn: sqlite3.Connection, table: str, dimension: int | None) -> int:
    """Bump `table`'s version (setting its dimension if it had none); the new version."""
    return int(conn.execute(BUMP, (table, dimension)).fetchone()[0])


def to_matrix(rows: Iterable[tuple[int, bytes]], dim: int) -> tuple[list[int], Any]:
    rows = list(rows)
    labels = [r[0] for r in rows]
    matrix = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(-1, dim).copy()
    return labels, matrix
