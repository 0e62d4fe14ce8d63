"""Reads of the SQLite store: one memory, pages of a query, counts, room summaries and a
table's dimension; small reads answered on the caller's thread from the read-only connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from contracts.memory import Memory, MemoryQuery
from contracts.storage import MemoryText, RoomSummary, sort_rooms

from . import worker
from .rows import (
    COLUMNS,
    COLUMNS_NO_EMBEDDING,
    content_text,
    from_micros,
    lazy_rows_to_memories,
    row_to_memory,
    row_uuid,
    table_state,
    uuid_of,
    where_clause,
)
from .worker import SqliteCore

T = TypeVar("T")
A = TypeVar("A")


_TEXTS_KEPT = 4096
"""Most rows `_text_of` keeps decoded (all are dropped when it is full). Each holds its stored
JSON (the key) and the text decoded from it: at most ~16 MB for ASCII contents, up to ~4x
that for contents of 4-byte characters (both strings at up to `_TEXT_CHARS` each)."""
_TEXT_CHARS = 2048
"""Longest stored content `_text_of` keeps decoded (longer ones are decoded each time)."""
_texts: dict[tuple[bytes, bytes, str], MemoryText] = {}


def _text_of(row: tuple[bytes, bytes, str]) -> MemoryText:
    """The `MemoryText` of a ``SELECT id, entity_id, content`` row, kept by the row itself: a
    room's history reads the same rows message after message (ten of its eleven), and the row's
    columns are all it is made of (an updated content is another key), so a row decoded once
    (its text parsed out of the JSON, two UUIDs) is not decoded again: ~1.5 us a row."""
    raw_id, raw_entity, content = row
    text = MemoryText(row_uuid(raw_id), uuid_of(raw_entity), content_text(content))
    if len(content) <= _TEXT_CHARS:
        if len(_texts) >= _TEXTS_KEPT:
            _texts.clear()
        _texts[row] = text
    return text


class SqliteReads(SqliteCore):
    """The read methods of `SqliteAdapter`."""

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        return await self._run(self._get_one, memory_id)

    def _get_one(self, memory_id: UUID) -> Memory | None:
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM memories WHERE id = ?", (memory_id.bytes,)
        ).fetchone()
        return None if row is None else row_to_memory(row)

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        if query.limit is not None and query.limit <= worker.INLINE_ROWS:
            found = self._read_here(self._get_many, query)
            if found is not None:
                return await self._paced(found[0])
        return await self._run(self._get_many, query)

    def _read_here(self, read: Callable[[A, sqlite3.Connection], T], arg: A) -> tuple[T] | None:
        """A small read (a room's history: a few rows) answered on the caller's thread, as
        `_search_here` answers searches: the hop to the worker and back costs more than the
        read. On the writes' connection when it is free (`_on_writes_conn`): the rows a
        message just wrote are in its page cache (~45 us a message: the history read right
        after the message's write). Else from the read-only connection, not the
        worker's, whose page cache stays warm for its scans. Neither waits for a lock (a WAL
        reader waits for nothing but another process's recovery). None when the read must go
        to the worker (both connections in use or closing, a busy database)."""
        try:
            found = self._on_writes_conn(lambda conn: read(arg, conn))
        except sqlite3.OperationalError:
            return None
        if found is not None:
            return found
        reader = self._reader
        if reader is None or not self._index_lock.acquire(blocking=False):
            return None
        try:
            return (read(arg, reader),)
        except sqlite3.OperationalError:
            return None
        finally:
            self._index_lock.release()

    def _get_many(self, query: MemoryQuery, conn: sqlite3.Connection | None = None) -> list[Memory]:
        columns = COLUMNS if query.with_embeddings else COLUMNS_NO_EMBEDDING
        rows = self._select(columns, query, conn)
        if len(rows) <= worker.INLINE_ROWS:
            return [row_to_memory(row) for row in rows]  # a few rows, read now (a history)
        return lazy_rows_to_memories(rows)  # a page: most fields decoded when first read

    def _select(
        self, columns: str, query: MemoryQuery, conn: sqlite3.Connection | None
    ) -> list[Any]:
        """`columns` of the rows `query` reads, in its order."""
        where, params = where_clause(query)
        direction = "ASC" if query.order == "asc" else "DESC"
        sql = (
            f"SELECT {columns} FROM memories{where} ORDER BY created_at {direction}, id {direction}"
        )
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        rows: list[Any] = (conn or self._db).execute(sql, params).fetchall()
        return rows

    async def get_memory_texts(self, query: MemoryQuery) -> list[MemoryText]:
        """`contracts.storage.TextReads`: a history's lines read without building the memories
        (a `Memory` per row, its content, metadata and time decoded, cost ~4 us a row)."""
        if query.limit is not None and query.limit <= worker.INLINE_ROWS:
            found = self._read_here(self._get_texts, query)
            if found is not None:
                return await self._paced(found[0])
        return await self._run(self._get_texts, query)

    def _get_texts(
        self, query: MemoryQuery, conn: sqlite3.Connection | None = None
    ) -> list[MemoryText]:
        rows = self._select("id, entity_id, content", query, conn)
        known = _texts.get
        return [known(row) or _text_of(row) for row in rows]

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        return await self._run(self._count, query or MemoryQuery())

    def _count(self, query: MemoryQuery) -> int:
        where, params = where_clause(query)
        return int(self._db.execute(f"SELECT COUNT(*) FROM memories{where}", params).fetchone()[0])

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        return await self._run(self._rooms, query or MemoryQuery())

    def _rooms(self, query: MemoryQuery) -> list[RoomSummary]:
        where, params = where_clause(query, keyset=False)
        rows = self._db.execute(
            f"SELECT room_id, COUNT(*), MAX(created_at) FROM memories{where} GROUP BY room_id",
            params,
        )
        return sort_rooms(
            [
                RoomSummary(uuid_of(room), int(count), from_micros(last))
                for room, count, last in rows
            ]
        )

    async def embedding_dimension(self, table_name: str) -> int | None:
        found = self._read_here(self._dimension, table_name)
        if found is not None:
            return await self._paced(found[0])
        return await self._run(self._dimension, table_name)

    def _dimension(self, table: str, conn: sqlite3.Connection | None = None) -> int | None:
        return table_state(conn or self._db, table)[0]
