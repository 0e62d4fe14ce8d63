"""`InMemoryAdapter`: a `DatabaseAdapter` in dicts and numpy, for tests and ephemeral agents.

Rows live in a dict by id plus a list kept sorted on ``(created_at, id)``, so keyset pages are a
bisect and a short scan. Embeddings are kept apart from the rows as float32 arrays (like the other
backends store them: 4 bytes a value instead of a Python float object each) and searched through
the same faiss indexes as SQLite (host.vectors). Every method runs to completion without
awaiting, so each call, batches included, is atomic with respect to other tasks; a batch is
validated whole before anything is applied.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np

from contracts.memory import (
    DEFAULT_TABLE,
    MAX_JSON_LENGTH,
    Content,
    Memory,
    MemoryQuery,
    MemoryUpdate,
)
from contracts.storage import (
    DEFAULT_SEARCH,
    BatchError,
    DimensionMismatchError,
    DuplicateMemoryError,
    IndexType,
    RoomSummary,
    SearchParams,
    StorageError,
    sort_rooms,
)
from contracts.vector import Vector
from host.storekit import (
    F32,
    I64,
    IndexParams,
    IndexSet,
    above_threshold,
    check_dimension,
    check_index_type,
    check_search,
    check_table_name,
    content_json,
    float32_array,
    metadata_json,
    query_vector,
    trusted_memory,
    unbatched,
)

__all__ = ["InMemoryAdapter"]

_Key = tuple[datetime, UUID]
_EVERYTHING = MemoryQuery()


class _Table:
    __slots__ = ("dimension", "vectors", "version")

    def __init__(self) -> None:
        self.dimension: int | None = None
        self.version = 0
        self.vectors: dict[int, np.ndarray[Any, np.dtype[np.float32]]] = {}  # label -> vector


class InMemoryAdapter:
    """A process-local memory store; everything is lost when it is closed."""

    backend = "inmemory"

    def __init__(self, *, index_params: IndexParams | None = None) -> None:
        # id -> (memory without its embedding, vector label); the vector is in its _Table.
        self._rows: dict[UUID, tuple[Memory, int]] = {}
        self._ids: dict[int, UUID] = {}  # vector label -> id
        self._order: list[_Key] = []
        self._tables: dict[str, _Table] = {}
        self._indexes = IndexSet(index_params)
        self._next_label = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("in-memory adapter is closed")

    def _table(self, name: str) -> _Table:
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = _Table()
        return table

    # -- writes -------------------------------------------------------------------------------

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        return await unbatched(self.create_memories_batch([memory], table_name))

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        return await self.replace_memories((), memories, table_name)

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        # No await from here on: readers see the store before or after, never in between.
        self._check_open()
        if table_name is not None:
            check_table_name(table_name)
        gone = set(delete_ids)
        staged: list[Memory] = []
        arrays: dict[UUID, Any] = {}  # id -> float32 vector
        dims: dict[str, int | None] = {}
        seen: set[UUID] = set()
        for index, memory in enumerate(memories):
            try:
                table = table_name or memory.table_name
                if table not in dims:
                    existing = self._tables.get(table)
                    dims[table] = None if existing is None else existing.dimension
                if memory.embedding is not None:
                    vector = float32_array(memory.embedding)
                    arrays[memory.id] = vector
                    dims[table] = check_dimension(table, dims[table], len(vector))
                if (memory.id in self._rows and memory.id not in gone) or memory.id in seen:
                    raise DuplicateMemoryError(memory.id)
                seen.add(memory.id)
                staged.append(_copy(memory, table_name=table, embedding=None))
            except (StorageError, TypeError, ValueError) as exc:
                raise BatchError("create_memories_batch", index, exc) from exc
        # Validated: from here on nothing can fail, so the batch applies whole.
        self._delete(delete_ids)
        added: dict[str, list[int]] = {}
        for memory in staged:
            label = self._next_label
            self._next_label += 1
            self._rows[memory.id] = (memory, label)
            self._ids[label] = memory.id
            state = self._table(memory.table_name)
            if state.dimension is None:
                state.dimension = dims[memory.table_name]
            if memory.id in arrays:
                state.vectors[label] = arrays[memory.id]
                added.setdefault(memory.table_name, []).append(label)
        self._insert_keys([(m.created_at, m.id) for m in staged])
        for name in {m.table_name for m in staged}:
            self._bump(name, added=added.get(name))
        return [m.id for m in staged]

    def _insert_keys(self, new: list[_Key]) -> None:
        if len(new) > 64:
            self._order.extend(new)
            self._order.sort()
        else:
            for key in new:
                insort(self._order, key)

    def _bump(
        self,
        name: str,
        *,
        removed: Sequence[int] = (),
        added: list[int] | None = None,
    ) -> None:
        table = self._table(name)
        old, table.version = table.version, table.version + 1
        vectors = None
        if added and self._indexes.has(name):
            vectors = (added, np.stack([table.vectors[label] for label in added]))
        self._indexes.apply(name, old, table.version, removed=removed, added=vectors)

    async def update_memory(self, update: MemoryUpdate) -> bool:
        return await unbatched(self.update_memories_batch([update]))

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        self._check_open()
        # id -> (memory, its vector, whether the vector changed); later updates of one id see
        # the earlier ones.
        staged: dict[UUID, tuple[Memory, Any, bool]] = {}
        found: list[bool] = []
        dims: dict[str, int | None] = {}
        for index, update in enumerate(updates):
            try:
                entry = staged.get(update.id)
                if entry is None:
                    row = self._rows.get(update.id)
                    if row is None:
                        found.append(False)
                        continue
                    memory, label = row
                    entry = (memory, self._tables[memory.table_name].vectors.get(label), False)
                memory, vector, changed = entry
                table = memory.table_name
                if table not in dims:
                    dims[table] = self._tables[table].dimension
                fields: dict[str, Any] = {}
                if update.content is not None:
                    fields["content"] = _copy_content(update.content)
                if update.metadata is not None:
                    fields["metadata"] = _checked_json(update.metadata)
                if update.unique is not None:
                    fields["unique"] = update.unique
                if "embedding" in update.changes:
                    changed, vector = True, None
                    if update.embedding is not None:
                        vector = float32_array(update.embedding)
                        dims[table] = check_dimension(table, dims[table], len(vector))
                staged[update.id] = (memory.model_copy(update=fields), vector, changed)
                found.append(True)
            except (StorageError, TypeError, ValueError) as exc:
                raise BatchError("update_memories_batch", index, exc) from exc
        # Validated: apply whole.
        removed: dict[str, list[int]] = {}
        added: dict[str, list[int]] = {}
        for memory_id, (memory, vector, changed) in staged.items():
            label = self._rows[memory_id][1]
            self._rows[memory_id] = (memory, label)
            state = self._tables[memory.table_name]
            if state.dimension is None:
                state.dimension = dims[memory.table_name]
            removed.setdefault(memory.table_name, [])
            if changed:
                removed[memory.table_name].append(label)
                state.vectors.pop(label, None)
                if vector is not None:
                    state.vectors[label] = vector
                    added.setdefault(memory.table_name, []).append(label)
        for name, labels in removed.items():
            self._bump(name, removed=labels, added=added.get(name))
        return found

    async def delete_memory(self, memory_id: UUID) -> bool:
        return await self.delete_memories_batch([memory_id]) == 1

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        self._check_open()
        return self._delete(memory_ids)

    def _delete(self, memory_ids: Sequence[UUID]) -> int:
        removed: dict[str, list[int]] = {}
        for memory_id in dict.fromkeys(memory_ids):
            entry = self._rows.pop(memory_id, None)
            if entry is None:
                continue
            memory, label = entry
            del self._ids[label]
            key = (memory.created_at, memory.id)
            del self._order[bisect_left(self._order, key)]
            self._table(memory.table_name).vectors.pop(label, None)
            removed.setdefault(memory.table_name, []).append(label)
        for name, labels in removed.items():
            self._bump(name, removed=labels)
        return sum(len(labels) for labels in removed.values())

    # -- reads --------------------------------------------------------------------------------

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        self._check_open()
        entry = self._rows.get(memory_id)
        return None if entry is None else self._out(*entry)

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        self._check_open()
        limit = query.limit
        out: list[Memory] = []
        if limit == 0:
            return out
        vectors = query.with_embeddings
        for memory, label in self._scan(query):
            out.append(self._out(memory, label) if vectors else _detached(memory, None))
            if limit is not None and len(out) >= limit:
                break
        return out

    def _scan(self, query: MemoryQuery) -> Any:
        """Matching memories in query order, walking only the keyset range that can match."""
        order, rows = self._order, self._rows
        if query.order == "asc":
            lo = 0
            if query.start is not None:
                lo = bisect_left(order, (query.start,))
            if query.after is not None:
                lo = max(lo, bisect_right(order, (query.after.created_at, query.after.id)))
            for i in range(lo, len(order)):
                created_at, memory_id = order[i]
                if query.end is not None and created_at >= query.end:
                    return
                entry = rows[memory_id]
                if query.matches(entry[0]):
                    yield entry
        else:
            hi = len(order)
            if query.end is not None:
                hi = bisect_left(order, (query.end,))
            if query.after is not None:
                hi = min(hi, bisect_left(order, (query.after.created_at, query.after.id)))
            for i in range(hi - 1, -1, -1):
                created_at, memory_id = order[i]
                if query.start is not None and created_at < query.start:
                    return
                entry = rows[memory_id]
                if query.matches(entry[0]):
                    yield entry

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        self._check_open()
        if query is None:
            return len(self._rows)
        return sum(1 for _ in self._scan(query))

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        self._check_open()
        scan = (query or MemoryQuery()).model_copy(update={"after": None, "order": "asc"})
        rooms: dict[UUID, RoomSummary] = {}
        for entry in self._scan(scan):  # oldest first: the last seen is the newest
            memory: Memory = entry[0]
            seen = rooms.get(memory.room_id)
            count = 1 if seen is None else seen.memories + 1
            rooms[memory.room_id] = RoomSummary(memory.room_id, count, memory.created_at)
        return sort_rooms(list(rooms.values()))

    async def reset_embeddings(self, table_name: str) -> int:
        self._check_open()
        check_table_name(table_name)
        table = self._tables.get(table_name)
        if table is None:
            return 0
        cleared = len(table.vectors)
        table.vectors.clear()
        table.dimension = None
        table.version += 1
        self._indexes.drop(table_name)
        return cleared

    async def embedding_dimension(self, table_name: str) -> int | None:
        self._check_open()
        table = self._tables.get(table_name)
        return None if table is None else table.dimension

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        self._check_open()
        params = params or DEFAULT_SEARCH
        kind = check_search(params)
        query = query or _EVERYTHING
        name = query.table_name or DEFAULT_TABLE
        table = self._tables.get(name)
        if table is None or table.dimension is None:
            return []
        if len(embedding) != table.dimension:
            raise DimensionMismatchError(name, table.dimension, len(embedding))
        q = query_vector(embedding, table.dimension)
        vectors = table.vectors
        load = functools.partial(_matrix, vectors, table.dimension)
        index = self._indexes.get(name, kind, table.dimension, table.version, load)
        if index is None:  # an approximate index is being built: answer exactly meanwhile
            index = self._indexes.get(name, "flat", table.dimension, table.version, load)
            assert index is not None  # flat indexes are built at once
        allowed = None
        if query.filters_rows:
            scoped = query.model_copy(update={"table_name": name, "after": None})
            allowed = [
                label
                for memory, label in self._rows.values()
                if label in vectors and scoped.matches(memory)
            ]
        exclude = params.exclude
        labels, scores = index.search(
            q,
            params.k + len(exclude),
            allowed=allowed,
            probes=params.probes,
            ef_search=params.ef_search,
        )
        labels, scores = above_threshold(labels, scores, params.threshold)
        ids, rows, wanted = self._ids, self._rows, vectors if params.with_embeddings else {}
        return [
            (_detached(rows[ids[label]][0], wanted.get(label)), score)
            for label, score in zip(labels, scores, strict=True)
            if label in ids and ids[label] not in exclude
        ][: params.k]

    def _out(self, memory: Memory, label: int) -> Memory:
        """The stored row with its embedding, as a copy the caller may mutate freely."""
        return _detached(memory, self._tables[memory.table_name].vectors.get(label))

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        self._check_open()
        kind = check_index_type(index_type)
        name = table_name or DEFAULT_TABLE
        while True:
            table = self._tables.get(name)
            if table is None or table.dimension is None:
                return
            load = functools.partial(_matrix, table.vectors, table.dimension)
            if self._indexes.get(name, kind, table.dimension, table.version, load) is not None:
                return
            build = self._indexes.pending(name, kind)
            assert build is not None  # get() started it
            await asyncio.wait([asyncio.wrap_future(build)])  # the loop serves meanwhile

    async def close(self) -> None:
        self._closed = True
        self._rows.clear()
        self._ids.clear()
        self._order.clear()
        self._tables.clear()
        self._indexes.close()

    def __repr__(self) -> str:
        return f"InMemoryAdapter({len(self._rows)} memories)"


def _matrix(vectors: dict[int, F32], dim: int) -> tuple[I64, F32]:
    """The labels and a float32 matrix of a table's vectors (a copy: an index is built from it)."""
    labels = np.fromiter(vectors.keys(), dtype=np.int64, count=len(vectors))
    if not vectors:
        return labels, np.empty((0, dim), dtype=np.float32)
    return labels, np.stack(list(vectors.values())).astype(np.float32)


_wrap = Vector.wrap
_ATOMS = (str, int, bool, type(None))  # floats are checked: NaN and infinities are not JSON


def _copy_json(value: Any) -> Any:
    """A copy of `value` as a JSON column gives it back (as the other backends store it).

    Tuples become lists and non-string keys strings; anything JSON cannot hold raises TypeError,
    NaN and infinities ValueError (`host.memory.metadata_json`, which the other stores write).
    The common case (string keys, plain values) is copied directly, without serialising.
    """
    if isinstance(value, _ATOMS):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not JSON (NaN and infinities have no JSON form)")
        return value
    if isinstance(value, dict):
        if all(type(key) is str for key in value):
            return {k: v if isinstance(v, _ATOMS) else _copy_json(v) for k, v in value.items()}
        return json.loads(metadata_json(value))
    if isinstance(value, list | tuple):
        return [v if isinstance(v, _ATOMS) else _copy_json(v) for v in value]
    raise TypeError(f"{type(value).__name__} value is not JSON serializable: {value!r}")


def _checked_json(value: Any) -> Any:
    """`_copy_json` of metadata being written, refused past the stores' limits."""
    if value:
        metadata_json(value)  # InvalidMemoryError (nested too deep, too long), like the others
    return _copy_json(value)


def _copy_content(content: Content) -> Content:
    """`content` as its JSON form gives it back (extra fields serialised like the backends do),
    within the limits every store keeps (`host.memory.content_json`)."""
    if not content.model_extra and 6 * len(content.text) < MAX_JSON_LENGTH:
        return content  # frozen, short text only: nothing mutable to share, nothing to check
    return Content.model_validate_json(content_json(content))


def _detached(memory: Memory, vector: np.ndarray[Any, np.dtype[np.float32]] | None) -> Memory:
    """Stored `memory` with `vector` as its embedding, sharing nothing mutable with the store
    (the stored array is read-only: a `Vector` wraps it as it is)."""
    values = memory.__dict__.copy()
    values["metadata"] = _copy_json(memory.metadata)
    values["content"] = _copy_content(memory.content)
    values["embedding"] = None if vector is None else _wrap(vector)
    return trusted_memory(values)


def _copy(memory: Memory, **update: Any) -> Memory:
    """`memory` with `update`, sharing nothing mutable with it (its metadata within the limits
    every store keeps: `host.memory.metadata_json`)."""
    update["metadata"] = _checked_json(memory.metadata)
    update["content"] = _copy_content(memory.content)
    return memory.model_copy(update=update)
