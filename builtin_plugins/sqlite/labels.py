"""The label sets of the SQLite store: per filter (a table's rows of one agent, room and/or
entity), the seqs of its rows, so that a filtered search need not read them each time.

A filtered search searches the vector index among the rows its filter allows. Reading them
(``SELECT seq FROM memories WHERE ...``) costs as much as the room or the speaker has rows, and
the recall provider makes two such searches for every message: a conversation's cost grew with
its length. A set is read once, then kept in step with this store's own writes (rows added,
deleted), as the vector indexes are (`IndexSet.apply`): each table's sets carry the table
version they reflect, and a write of another process (the version moved without this store's
`apply`) drops them, to be read again at the next search.

Only equality filters on agent, entity and room are kept (time ranges and ``unique`` change
with updates or are rare: those searches read their rows as before). Rows are kept whether or
not they have a vector: the index knows which do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from contracts.memory import MemoryQuery
from host.storekit import I64

__all__ = ["MAX_SETS", "Filter", "LabelSets", "Row", "label_filter"]

Filter = tuple[bytes | None, bytes | None, bytes | None]
"""A kept filter: agent, entity, room (UUID bytes; None: any)."""
Row = tuple[int, bytes, bytes, bytes]
"""A row as the sets see it: seq, agent, entity, room."""

MAX_SETS = 4096
"""Sets kept per table, the least recently searched dropped first (about 16 KB for a set of
2,000 rows)."""


def label_filter(query: MemoryQuery) -> Filter | None:
    """The filter of `query` if its rows can be kept as a set (agent, entity, room equality
    only), else None."""
    if query.start is not None or query.end is not None or query.unique is not None:
        return None
    return (
        None if query.agent_id is None else query.agent_id.bytes,
        None if query.entity_id is None else query.entity_id.bytes,
        None if query.room_id is None else query.room_id.bytes,
    )


class _Seqs:
    """A growable int64 array of seqs (appending one is O(1), not a copy of the set)."""

    __slots__ = ("_buf", "_n")

    def __init__(self, seqs: I64) -> None:
        self._buf = np.array(seqs, dtype=np.int64)
        self._n = len(seqs)

    def view(self) -> I64:
        return self._buf[: self._n]

    def append(self, seq: int) -> None:
        if self._n == len(self._buf):
            grown = np.empty(max(16, 2 * self._n), dtype=np.int64)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n] = seq
        self._n += 1

    def discard(self, seqs: I64) -> None:
        keep = ~np.isin(self.view(), seqs)
        if not keep.all():
            kept = self.view()[keep]
            self._buf[: len(kept)] = kept
            self._n = len(kept)


@dataclass(slots=True)
class _Table:
    version: int
    """The table version every set below reflects."""
    sets: OrderedDict[Filter, _Seqs] = field(default_factory=OrderedDict)


class LabelSets:
    """The kept label sets of every table. Not thread-safe: the store uses it under its index
    lock, as it does the vector indexes."""

    def __init__(self, limit: int = MAX_SETS) -> None:
        self.limit = limit
        self._tables: dict[str, _Table] = {}

    def get(self, table: str, version: int, where: Filter) -> I64 | None:
        """The seqs of `table`'s rows passing `where` as of `version`, if kept (a view: valid
        until the next change)."""
        kept = self._tables.get(table)
        if kept is None or kept.version != version:
            return None
        seqs = kept.sets.get(where)
        if seqs is None:
            return None
        kept.sets.move_to_end(where)
        return seqs.view()

    def put(self, table: str, version: int, where: Filter, seqs: I64) -> None:
        """Keep `seqs`, `table`'s rows passing `where` as read at `version` (the sets of another
        version are dropped)."""
        kept = self._tables.get(table)
        if kept is None or kept.version != version:
            kept = self._tables[table] = _Table(version)
        kept.sets[where] = _Seqs(seqs)
        while len(kept.sets) > self.limit:
            kept.sets.popitem(last=False)

    def has(self, table: str) -> bool:
        """Whether `table` has sets (its writes must then be applied)."""
        return table in self._tables

    def apply(
        self,
        table: str,
        old_version: int,
        new_version: int,
        *,
        removed: Iterable[int] = (),
        added: Iterable[Row] = (),
    ) -> None:
        """Move `table`'s sets from `old_version` to `new_version`: `removed` seqs leave them,
        `added` rows join the sets whose filter they pass. Sets that were not at `old_version`
        missed another write and are dropped."""
        kept = self._tables.get(table)
        if kept is None:
            return
        if kept.version != old_version:
            del self._tables[table]
            return
        kept.version = new_version
        gone = np.fromiter(removed, dtype=np.int64)
        if len(gone):
            for seqs in kept.sets.values():
                seqs.discard(gone)
        sets = kept.sets
        for seq, agent, entity, room in added:
            for where in (
                (agent, None, None),
                (None, entity, None),
                (None, None, room),
                (agent, entity, None),
                (agent, None, room),
                (None, entity, room),
                (agent, entity, room),
            ):
                found = sets.get(where)
                if found is not None:
                    found.append(seq)

    def drop(self, table: str | None = None) -> None:
        """Forget the sets of `table` (of every table when None)."""
        if table is None:
            self._tables.clear()
        else:
            self._tables.pop(table, None)
