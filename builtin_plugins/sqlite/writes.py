"""Writes of the SQLite store: create, update, delete and replace batches, each one step run
inside a transaction (inline or in the worker's group commit, worker.py) that returns what updates
the vector indexes once it has committed; and clearing a table's embeddings.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import numpy as np

from contracts.memory import Memory, MemoryUpdate
from contracts.storage import (
    BatchError,
    DimensionMismatchError,
    DuplicateMemoryError,
    StorageError,
)
from host.storekit import (
    check_dimension,
    check_table_name,
    content_json,
    metadata_json,
    unbatched,
)

from .labels import Row
from .rows import (
    BUMP,
    BUMP_ANY,
    BUMP_SAME,
    CHUNK,
    INSERT,
    VERSION,
    bump_version,
    embedding_blob,
    table_state,
    to_matrix,
    to_micros,
)
from .worker import SqliteCore


def _nothing() -> None:
    """A write's index update when its table has no index and no label set."""


def _row(memory: Memory, table: str, blob: bytes | None) -> tuple[Any, ...]:
    """`memory`'s row for `INSERT` into `table` (its embedding's bytes `blob`); the content's
    and metadata's errors (`content_json`, `metadata_json`) raised."""
    return (
        memory.id.bytes,
        table,
        memory.agent_id.bytes,
        memory.entity_id.bytes,
        memory.room_id.bytes,
        to_micros(memory.created_at),
        content_json(memory.content),
        metadata_json(memory.metadata),
        blob,
        int(memory.unique),
    )


class SqliteWrites(SqliteCore):
    """The write methods of `SqliteAdapter`."""

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        if table_name is not None:
            check_table_name(table_name)
        return await self._submit(functools.partial(self._create_step, memory, table_name), 1)

    def _create_step(
        self, memory: Memory, override: str | None, conn: sqlite3.Connection
    ) -> tuple[UUID, Callable[[], None]]:
        """Insert `memory` inside the caller's transaction: `_replace_step` for one row in
        two statements instead of four (what each message's two writes take). The table's
        version is bumped first, its dimension checked off the same statement: an ``UPDATE``
        of the table if its dimension is the row's (any dimension, the row having no vector)
        says by its row count whether it bumped; when it did not (a new table, no dimension
        yet, a mismatch), ``BUMP`` returns the version and the dimension (a mismatch raises,
        and the caller's rollback undoes the bump). The version itself is read only when this
        process keeps an index or a label set of the table (to bring them to it). The row's
        seq is the INSERT's rowid. No ``RETURNING``: in the pipeline a DML statement with one
        cost ~20 us where the ``UPDATE`` costs ~8 and a ``SELECT`` of the version ~5. No
        ``MAX(seq)`` read, nothing read back for the indexes and the label sets (the row's
        vector and ids are at hand). (The index lock is held from the transaction's start to
        this step's apply: no index or label set of the table can appear meanwhile.)"""
        table = override or memory.table_name
        embedding = memory.embedding
        blob = dim = None
        if embedding is not None:  # its errors as `_encode_rows` gives them, unwrapped
            dim = len(embedding)
            blob = embedding_blob(embedding)
        row = _row(memory, table, blob)
        indexed, labelled_table = self._indexes.has(table), self._labels.has(table)
        kept = indexed or labelled_table
        version = 0
        bump = (
            conn.execute(BUMP_ANY, (table,))
            if dim is None
            else conn.execute(BUMP_SAME, (table, dim))
        )
        if bump.rowcount != 1:
            version, stored = conn.execute(BUMP, (table, dim)).fetchone()
            if dim is not None and stored != dim:
                raise DimensionMismatchError(table, stored, dim)
        elif kept:
            version = conn.execute(VERSION, (table,)).fetchone()[0]
        try:
            seq: int = conn.execute(INSERT, row).lastrowid  # type: ignore[assignment]  # set: a rowid table
        except sqlite3.IntegrityError as exc:
            error = self._first_existing(conn, [memory], None)
            raise (DuplicateMemoryError(memory.id) if error else StorageError(str(exc))) from exc
        if not kept:
            return memory.id, _nothing
        added = None
        if blob is not None and indexed:
            added = ([seq], np.frombuffer(blob, "<f4").reshape(1, -1).copy())
        labelled: list[Row] = [(seq, row[2], row[3], row[4])] if labelled_table else []

        def apply() -> None:
            self._indexes.apply(table, version - 1, version, added=added)
            self._labels.apply(table, version - 1, version, added=labelled)

        return memory.id, apply

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        if table_name is not None:
            check_table_name(table_name)
        batch = list(memories)
        if not batch:
            return []
        return await self._submit(
            functools.partial(self._replace_step, [], batch, table_name), len(batch)
        )

    def _create_batch(self, batch: list[Memory], override: str | None) -> list[UUID]:
        return self._replace_batch([], batch, override)

    def _replace_batch(
        self, ids: list[UUID], batch: list[Memory], override: str | None
    ) -> list[UUID]:
        """Delete `ids` and insert `batch` in one transaction, then update the indexes once
        (on the calling thread: the worker's, or a test's)."""
        return self._commit_one(functools.partial(self._replace_step, ids, batch, override))

    def _replace_step(
        self, ids: list[UUID], batch: list[Memory], override: str | None, conn: sqlite3.Connection
    ) -> tuple[list[UUID], Callable[[], None]]:
        """Delete `ids` and insert `batch` inside the caller's transaction; the ids, and what
        brings the indexes up to date once that transaction has committed."""
        state: dict[str, tuple[int | None, int]] = {}  # table -> (dimension, version)
        removed: dict[str, list[int]] = {}  # table -> seqs deleted
        added: dict[str, tuple[int, int]] = {}  # table -> (version before, version after)
        vectors: dict[str, tuple[list[int], Any] | None] = {}  # table -> rows for its indexes
        inserted: dict[str, list[Row]] = {}  # table -> rows for its label sets
        self._delete_rows(conn, ids, removed)
        for table in removed:
            state[table] = table_state(conn, table)
        rows = self._encode_rows(conn, batch, override, state)
        # the seqs this batch writes are above it (read also for the errors' "stored before")
        before_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM memories").fetchone()[0]
        try:
            conn.executemany(INSERT, rows)
        except sqlite3.IntegrityError as exc:
            error = self._first_existing(conn, batch, before_seq)
            raise error or BatchError("create_memories_batch", 0, StorageError(str(exc))) from exc
        for table, (dim, version) in state.items():
            added[table] = (version, bump_version(conn, table, dim))
            # (the index lock is held through the write)
            if self._indexes.has(table) or self._labels.has(table):
                vectors[table], inserted[table] = self._rows_since(conn, table, before_seq, dim)

        def apply() -> None:
            for table, (old, new) in added.items():
                gone = removed.get(table, ())
                self._indexes.apply(table, old, new, removed=gone, added=vectors.get(table))
                self._labels.apply(table, old, new, removed=gone, added=inserted.get(table, ()))

        return [m.id for m in batch], apply

    def _encode_rows(
        self,
        conn: sqlite3.Connection,
        batch: list[Memory],
        override: str | None,
        state: dict[str, tuple[int | None, int]],
    ) -> list[tuple[Any, ...]]:
        """`batch`'s rows for `INSERT`, each checked (its table's dimension, noted in `state`,
        and no id twice); a bad row raises the `BatchError` naming it."""
        rows: list[tuple[Any, ...]] = []
        seen: dict[UUID, int] = {}
        for index, memory in enumerate(batch):
            try:
                table = override or memory.table_name
                if table not in state:
                    dim, version = table_state(conn, table)
                    state[table] = (dim, version)
                dim, version = state[table]
                blob = None
                if memory.embedding is not None:
                    got = check_dimension(table, dim, len(memory.embedding))
                    state[table] = (got, version)
                    blob = embedding_blob(memory.embedding)
                if memory.id in seen:
                    raise DuplicateMemoryError(memory.id)
                seen[memory.id] = index
                rows.append(_row(memory, table, blob))
            except (StorageError, TypeError, ValueError) as exc:
                # Rows are checked against existing ids only by the INSERT below; report an
                # earlier duplicate first, as the other backends do.
                earlier = self._first_existing(conn, batch[:index], None)
                if earlier is not None:
                    raise earlier from None
                raise BatchError("create_memories_batch", index, exc) from exc
        return rows

    @staticmethod
    def _delete_rows(
        conn: sqlite3.Connection, ids: list[UUID], removed: dict[str, list[int]]
    ) -> int:
        """Delete `ids` inside the caller's transaction, noting each table's deleted seqs."""
        count = 0
        for start in range(0, len(ids), CHUNK):
            chunk = [i.bytes for i in ids[start : start + CHUNK]]
            marks = ",".join("?" * len(chunk))
            for seq, table in conn.execute(
                f"DELETE FROM memories WHERE id IN ({marks}) RETURNING seq, table_name", chunk
            ).fetchall():
                removed.setdefault(table, []).append(seq)
                count += 1
        return count

    def _first_existing(
        self, conn: sqlite3.Connection, batch: list[Memory], before_seq: int | None
    ) -> BatchError | None:
        """The error for the first row of `batch` whose id is stored (with seq <= `before_seq`,
        i.e. stored before this batch, when given); None if there is none."""
        existing: set[bytes] = set()
        limit = "" if before_seq is None else f"seq <= {int(before_seq)} AND "
        for start in range(0, len(batch), CHUNK):
            chunk = [m.id.bytes for m in batch[start : start + CHUNK]]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id FROM memories WHERE {limit}id IN ({marks})"
            existing.update(r[0] for r in conn.execute(sql, chunk))
        for index, memory in enumerate(batch):
            if memory.id.bytes in existing:
                return BatchError("create_memories_batch", index, DuplicateMemoryError(memory.id))
        return None

    @staticmethod
    def _rows_since(
        conn: sqlite3.Connection, table: str, after_seq: int, dim: int | None
    ) -> tuple[tuple[list[int], Any] | None, list[Row]]:
        """`table`'s rows written after `after_seq`: their vectors for the indexes (None if the
        table has none) and their (seq, agent, entity, room) for the label sets."""
        rows = conn.execute(
            "SELECT seq, embedding, agent_id, entity_id, room_id FROM memories"
            " WHERE table_name = ? AND seq > ? ORDER BY seq",
            (table, after_seq),
        ).fetchall()
        vectors = None
        if dim is not None:
            vectors = to_matrix([(r[0], r[1]) for r in rows if r[1] is not None], dim)
        return vectors, [(r[0], r[2], r[3], r[4]) for r in rows]

    async def update_memory(self, update: MemoryUpdate) -> bool:
        return await unbatched(self.update_memories_batch([update]))

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        batch = list(updates)
        if not batch:
            return []
        return await self._submit(functools.partial(self._update_step, batch), len(batch))

    def _update_batch(self, batch: list[MemoryUpdate]) -> list[bool]:
        return self._commit_one(functools.partial(self._update_step, batch))

    def _update_step(
        self, batch: list[MemoryUpdate], conn: sqlite3.Connection
    ) -> tuple[list[bool], Callable[[], None]]:
        tables: dict[str, tuple[int | None, int]] = {}
        # table -> seq -> its new embedding blob (None: cleared), the last update of a row winning
        vectors: dict[str, dict[int, bytes | None]] = {}
        versions: dict[str, tuple[int, int]] = {}

        def body() -> list[bool]:
            found: list[bool] = []
            for index, update in enumerate(batch):
                try:
                    row = conn.execute(
                        "SELECT seq, table_name FROM memories WHERE id = ?", (update.id.bytes,)
                    ).fetchone()
                    if row is None:
                        found.append(False)
                        continue
                    seq, table = row
                    if table not in tables:
                        tables[table] = table_state(conn, table)
                    dim, version = tables[table]
                    sets: list[str] = []
                    params: list[Any] = []
                    changes = update.changes
                    if "content" in changes and update.content is not None:
                        sets.append("content = ?")
                        params.append(content_json(update.content))
                    if "metadata" in changes and update.metadata is not None:
                        sets.append("metadata = ?")
                        params.append(metadata_json(update.metadata))
                    if "unique" in changes and update.unique is not None:
                        sets.append("is_unique = ?")
                        params.append(int(update.unique))
                    if "embedding" in changes:
                        blob = None
                        if update.embedding is not None:
                            got = check_dimension(table, dim, len(update.embedding))
                            tables[table] = (got, version)
                            blob = embedding_blob(update.embedding)
                        sets.append("embedding = ?")
                        params.append(blob)
                        vectors.setdefault(table, {})[seq] = blob
                    if sets:
                        conn.execute(
                            f"UPDATE memories SET {', '.join(sets)} WHERE seq = ?", (*params, seq)
                        )
                        versions.setdefault(table, (version, 0))
                    found.append(True)
                except (StorageError, TypeError, ValueError) as exc:
                    raise BatchError("update_memories_batch", index, exc) from exc
            for table, (old, _) in versions.items():
                versions[table] = (old, bump_version(conn, table, tables[table][0]))
            return found

        result = body()
        return result, functools.partial(self._apply_updates, versions, tables, vectors)

    def _apply_updates(
        self,
        versions: dict[str, tuple[int, int]],
        tables: dict[str, tuple[int | None, int]],
        vectors: dict[str, dict[int, bytes | None]],
    ) -> None:
        for table, (old, new) in versions.items():
            dim = tables[table][0]
            changed = vectors.get(table, {})
            kept = {seq: blob for seq, blob in changed.items() if blob is not None}
            added = None
            if kept and dim is not None:
                matrix = np.frombuffer(b"".join(kept.values()), "<f4").reshape(-1, dim).copy()
                added = (list(kept), matrix)
            self._indexes.apply(table, old, new, removed=changed, added=added)
            self._labels.apply(table, old, new)  # rows keep their agent, entity and room

    async def delete_memory(self, memory_id: UUID) -> bool:
        return await self.delete_memories_batch([memory_id]) == 1

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0
        return await self._submit(functools.partial(self._delete_step, ids), len(ids))

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        if table_name is not None:
            check_table_name(table_name)
        ids, batch = list(dict.fromkeys(delete_ids)), list(memories)
        if not ids and not batch:
            return []
        return await self._submit(
            functools.partial(self._replace_step, ids, batch, table_name), len(ids) + len(batch)
        )

    def _delete_batch(self, ids: list[UUID]) -> int:
        return self._commit_one(functools.partial(self._delete_step, ids))

    def _delete_step(
        self, ids: list[UUID], conn: sqlite3.Connection
    ) -> tuple[int, Callable[[], None]]:
        removed: dict[str, list[int]] = {}
        versions: dict[str, tuple[int, int]] = {}
        count = self._delete_rows(conn, ids, removed)
        for table in removed:
            dim, version = table_state(conn, table)
            versions[table] = (version, bump_version(conn, table, dim))

        def apply() -> None:
            for table, (old, new) in versions.items():
                self._indexes.apply(table, old, new, removed=removed[table])
                self._labels.apply(table, old, new, removed=removed[table])

        return count, apply

    async def reset_embeddings(self, table_name: str) -> int:
        check_table_name(table_name)
        return await self._run(self._reset_embeddings, table_name)

    def _reset_embeddings(self, table: str) -> int:
        def body(conn: sqlite3.Connection) -> int:
            cleared = conn.execute(
                "UPDATE memories SET embedding = NULL"
                " WHERE table_name = ? AND embedding IS NOT NULL",
                (table,),
            ).rowcount
            conn.execute(
                "UPDATE memory_tables SET dimension = NULL, version = version + 1"
                " WHERE table_name = ?",
                (table,),
            )
            return int(cleared)

        with self._index_lock:
            cleared = self._write(body)
            self._indexes.drop(table)
            self._labels.drop(table)
        return cleared
