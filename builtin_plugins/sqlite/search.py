"""Vector search of the SQLite store and the upkeep of its indexes: searches answered on the
caller's thread when an index (and for a filtered search, its label set: labels.py) is current,
else on the worker in one read snapshot; index builds and the loading of a table's vectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery
from contracts.storage import (
    DEFAULT_SEARCH,
    DatabaseAdapter,
    DimensionMismatchError,
    IndexType,
    SearchParams,
    search_each,
)
from host.storekit import (
    F64,
    I64,
    VectorIndex,
    above_threshold,
    as_vector,
    check_index_type,
    check_search,
    query_vector,
)

from .gather import here_or_after_worker
from .labels import label_filter
from .rows import by_seqs_sql, lazy_row_to_memory, seq_params, table_state, to_matrix, where_clause
from .worker import SqliteCore

T = TypeVar("T")


class Read(Protocol):
    """Runs a search's statements on the connection a search on the caller's thread reads
    from (`SqliteSearch._here`), holding it only meanwhile."""

    def __call__(self, statements: Callable[[sqlite3.Connection], T], /) -> T: ...


_EVERYTHING = MemoryQuery()
LOOP_ROWS = 8192
"""Most rows a filtered search allows to be answered on the caller's thread: scoring them
exactly costs about 0.1 us each (384-d), under a millisecond; bigger filters go to the worker."""
_VERSION_SQL = "SELECT version FROM memory_tables WHERE table_name = ?"
EXCLUDED_IN_SQL = 64
"""Most `SearchParams.exclude` ids a search on the caller's thread leaves out in its statement
(recall's: the recent conversation, 11), instead of reading their rows to drop them."""


class SqliteSearch(SqliteCore):
    """The search and index methods of `SqliteAdapter`."""

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        params = params or DEFAULT_SEARCH
        kind = check_search(params)
        vector = as_vector(embedding)  # a copy: the caller may reuse its sequence meanwhile
        args = (vector, query or _EVERYTHING, params)
        if (kind != "flat" or args[1].filters_rows) and self._executor is not None:
            found = await here_or_after_worker(self, lambda: self._search_here(*args))
            if found is not None:
                return await self._paced(found)
        return await self._run(self._search, *args)

    def _search_here(
        self, embedding: F64, query: MemoryQuery, params: SearchParams
    ) -> list[tuple[Memory, float]] | None:
        """An approximate search, or a filtered one, answered on the caller's thread (the event
        loop), None when it must go to the worker thread instead.

        The hop to the worker and back costs 0.1-0.2 ms on a quiet machine and several ms on a
        loaded one, more than the HNSW search itself; an ANN search over an index already built
        and current needs no disk write, only a read snapshot of a few rows. So when a
        connection (`_here`), the index lock and a current index are all at hand at once, it
        runs here, in its own read transaction (WAL: readers never wait on the writer).
        Whatever would wait or change an index (the worker busy with the indexes, a missing or
        stale index, a build to start or install, a locked database) goes to the worker as
        before. A filtered search whose label set is current (`_search_labelled`) reads one
        statement, like an unfiltered one; an exact one whose set is not kept yet reads it
        here when it has at most `LOOP_ROWS` rows (a new room's or speaker's first search:
        sent to the worker, 100 rooms' first searches kept it busy, gather.py)."""

        def search(read: Read) -> list[tuple[Memory, float]] | None:
            if query.filters_rows:
                found = self._search_labelled(read, embedding, (query,), params)
                if found is not None:
                    return found
                if params.index_type == "flat" and label_filter(query) is None:
                    return None  # its rows would be read again at every search: the worker
                # the allowed rows (an exact search's read here and kept when there are at
                # most LOOP_ROWS: a new room's or speaker's first search) and the index at
                # one snapshot
                return read(lambda conn: self._search_on(conn, embedding, query, params, here=True))
            return self._search_unfiltered(
                read, embedding, query.table_name or DEFAULT_TABLE, params
            )

        return self._here(search)

    def _here(
        self, search: Callable[[Read], list[tuple[Memory, float]] | None]
    ) -> list[tuple[Memory, float]] | None:
        """`search` run on the caller's thread with the index lock held (None: not now, the
        worker answers); its statements (`Read`) on the writes' connection when it is free
        (`_on_writes_conn`: recall's statements, right after the message's write, cost ~20-30
        us a message less there, 1,000 messages), else on the read-only one. It is held only
        while the statements run, not while the index is searched (the worker may want it
        meanwhile), except for the first search of a filter whose label set is not kept yet
        (`_search_on`: the allowed rows, the index and the hits at one snapshot). Neither
        waits for a lock (as `_read_here`)."""
        reader = self._reader
        if reader is None or not self._index_lock.acquire(blocking=False):
            return None  # no read-only connection (in memory, closing): the worker's

        def read(statements: Callable[[sqlite3.Connection], T]) -> T:
            found = self._on_writes_conn(statements)
            return found[0] if found is not None else statements(reader)

        try:
            return search(read)
        except sqlite3.OperationalError:
            return None  # busy or locked: the worker waits its busy_timeout
        finally:
            self._index_lock.release()

    def _search(
        self, embedding: F64, query: MemoryQuery, params: SearchParams
    ) -> list[tuple[Memory, float]]:
        with self._index_lock:
            found = self._search_on(self._db, embedding, query, params, here=False)
        assert found is not None  # only a search `here` gives up
        return found

    def _search_unfiltered(
        self, read: Read, embedding: F64, table: str, params: SearchParams
    ) -> list[tuple[Memory, float]] | None:
        """An unfiltered search on the index as it stands, its rows read by one statement that
        also reads the table's version: when that is the index's version, the rows and the
        index are of one snapshot (else None: the worker searches again). One statement where
        the snapshot of `_search_on` costs four (BEGIN, the table's state, the rows, COMMIT)."""
        index = self._indexes.latest(table, params.index_type)
        if index is None or len(embedding) != index.dim:
            return None  # the worker builds it, or names the dimension mismatch
        labels, scores = index.search(
            query_vector(embedding, index.dim),
            params.k + len(params.exclude),
            probes=params.probes,
            ef_search=params.ef_search,
        )
        labels, scores = above_threshold(labels, scores, params.threshold)
        version = index.version
        return read(lambda conn: self._rows_at(conn, table, version, labels, scores, params))

    def _search_labelled(
        self,
        read: Read,
        embedding: F64,
        queries: Sequence[MemoryQuery],
        params: SearchParams,
        leave_out: MemoryQuery | None = None,
    ) -> list[tuple[Memory, float]] | None:
        """A filtered search among the rows of its label sets (labels.py; several queries of one
        table: the rows of any of them, scored once), on the index as it stands, in one
        statement as `_search_unfiltered` (None: the worker answers, reading and keeping the
        sets). Index and sets are of one version; the statement reading the rows reads the
        table's version too, and only when it is theirs are the hits those of that snapshot.
        `leave_out`'s rows (at most its limit: k more are scored) are left out as `_rows_at`
        says (read first, at the same version, or by its statement)."""
        table = queries[0].table_name or DEFAULT_TABLE
        index = self._indexes.latest(table, params.index_type)
        if index is None or len(embedding) != index.dim:
            return None
        found = self._kept_sets(queries, table, index.version)
        if found is None:
            return None
        sets = []
        for _, kept in found:
            if kept is None or len(kept) > LOOP_ROWS:
                return None
            sets.append(kept)
        shown = 0 if leave_out is None or leave_out.limit is None else leave_out.limit
        labels, scores = index.search(
            query_vector(embedding, index.dim),
            params.k + len(params.exclude) + shown,
            among=sets,
            probes=params.probes,
            ef_search=params.ef_search,
        )
        labels, scores = above_threshold(labels, scores, params.threshold)
        version = index.version
        return read(
            lambda conn: self._rows_at(conn, table, version, labels, scores, params, leave_out)
        )

    @staticmethod
    def _rows_at(
        conn: sqlite3.Connection,
        table: str,
        version: int,
        labels: list[int],
        scores: list[float],
        params: SearchParams,
        leave_out: MemoryQuery | None = None,
    ) -> list[tuple[Memory, float]] | None:
        """The hits `labels` with their rows, read by one statement that also reads `table`'s
        version: None unless it is `version` (the index's: then rows and index are of one
        snapshot). No hits: the version alone is read. The rows of excluded ids and those
        `leave_out` reads (its filters, order and limit, as `get_memories`) are left out.

        A `leave_out` of `table` is read first (its seqs and the version: `_shown`), and
        only the best hits beyond it are read (k and the excluded ids: recall's 6 rows
        instead of 17); both statements see `version`, so no write came between them. Else
        the statement reading the hits leaves them out itself (``id NOT IN`` a subquery)."""
        if not labels:
            return [] if _version(conn, table) == version else None
        if leave_out is not None and leave_out.table_name == table and leave_out.limit:
            shown = _shown(conn, table, leave_out)
            if shown is not None:
                if shown[1] != version:
                    return None
                labels, scores = _beyond(labels, scores, shown[0], params.k + len(params.exclude))
                if not labels:
                    return []
                leave_out = None
        excluded = params.exclude if len(params.exclude) <= EXCLUDED_IN_SQL else ()
        sql = by_seqs_sql(
            len(labels), versioned=True, vectors=params.with_embeddings, excluded=len(excluded)
        )
        values = [table, *seq_params(labels), *(memory_id.bytes for memory_id in excluded)]
        if leave_out is not None:
            where, among = where_clause(leave_out)
            order = "ASC" if leave_out.order == "asc" else "DESC"
            sql += (
                f" AND id NOT IN (SELECT id FROM memories{where}"
                f" ORDER BY created_at {order}, id {order} LIMIT ?)"
            )
            values += [*among, leave_out.limit]
        rows = {r[0]: r for r in conn.execute(sql, values)}
        if excluded or leave_out is not None:
            # the rows left out are not read (nor counted): at the index's version every other
            # hit has its row, and with none read the version is read alone
            if not rows:
                return [] if _version(conn, table) == version else None
        elif len(rows) != len(labels):
            return None
        if any(r[-1] != version for r in rows.values()):
            return None
        return _hits(rows, labels, scores, params)

    def _search_on(
        self,
        conn: sqlite3.Connection,
        embedding: F64,
        query: MemoryQuery,
        params: SearchParams,
        *,
        here: bool,
    ) -> list[tuple[Memory, float]] | None:
        kind = params.index_type
        with self._snapshot(conn):
            table = query.table_name or DEFAULT_TABLE
            dim, version = table_state(conn, table)
            if dim is None:
                return []
            if len(embedding) != dim:
                raise DimensionMismatchError(table, dim, len(embedding))
            if here:
                index = self._indexes.current(table, kind, dim, version)
                if index is None:
                    return None
            else:
                index = self._index(table, kind, dim, version)
            q = query_vector(embedding, dim)
            allowed = None
            if query.filters_rows:
                most = LOOP_ROWS if here and kind == "flat" else None
                allowed = self._allowed(conn, query, table, version, most)
                if most is not None and len(allowed) > most:
                    return None  # too many to score on the caller's thread: the worker does
            labels, scores = index.search(
                q,
                params.k + len(params.exclude),
                allowed=allowed,
                probes=params.probes,
                ef_search=params.ef_search,
            )
            labels, scores = above_threshold(labels, scores, params.threshold)
            if not labels:
                return []
            # One statement for the k rows (`by_seqs_sql`).
            sql = by_seqs_sql(len(labels), versioned=False, vectors=params.with_embeddings)
            rows = {r[0]: r for r in conn.execute(sql, seq_params(labels))}
            return _hits(rows, labels, scores, params)

    def _allowed(
        self,
        conn: sqlite3.Connection,
        query: MemoryQuery,
        table: str,
        version: int,
        most: int | None = None,
    ) -> I64:
        """The seqs of `table`'s rows `query` filters to, at `version` (`conn`'s snapshot): its
        label set when kept, else read (and kept when its filter can be). With `most`, a read
        stops after `most` + 1 rows: more than `most` seqs means there are more (not kept)."""
        where = label_filter(query)
        if where is not None:
            kept = self._labels.get(table, version, where)
            if kept is not None:
                return kept
        scoped = query.model_copy(update={"table_name": table, "after": None})
        sql, values = where_clause(scoped, keyset=False)
        if most is not None:
            sql += " LIMIT ?"
            values = [*values, most + 1]
        cursor = conn.execute(f"SELECT seq FROM memories{sql}", values)
        seqs = np.fromiter((r[0] for r in cursor), dtype=np.int64)
        if most is not None and len(seqs) > most:
            return seqs
        if where is not None:
            self._labels.put(table, version, where, seqs)
        return seqs

    @contextlib.contextmanager
    def _snapshot(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """One read transaction, so that a table's version, its index load, a filter and the
        rows all come from one snapshot. In autocommit each statement saw the latest commit:
        another process deleting the newest row and inserting elsewhere between them (SQLite
        reuses that rowid, the index label) made a search return another table's row."""
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _index(self, table: str, kind: IndexType, dim: int, version: int) -> VectorIndex:
        """`kind`'s index of `table` (on the worker, in a read snapshot); the exact one while
        an approximate one is built on the index thread."""
        index = self._indexes.get(table, kind, dim, version, lambda: self._load(table, dim))
        if index is None:
            index = self._indexes.get(table, "flat", dim, version, lambda: self._load(table, dim))
            assert index is not None  # flat indexes are built at once
        return index

    async def search_memories_any(
        self,
        embedding: Sequence[float],
        queries: Sequence[MemoryQuery],
        params: SearchParams | None = None,
        *,
        leave_out: MemoryQuery | None = None,
    ) -> list[tuple[Memory, float]]:
        """`contracts.storage.ScopedSearch`: an exact search of several filters of one table
        whose label sets are kept scores their rows together, once, and reads `leave_out`'s
        seqs and then the best hits beyond them, both statements checked against the index's
        version (the recall provider's room and speaker beyond the recent conversation: one
        search and two small statements, where it took two searches and a read of the
        conversation); other searches go one query at a time (`search_each`), keeping their
        sets for the next."""
        params = params or DEFAULT_SEARCH
        check_search(params)
        if not queries:
            return []
        if leave_out is None and len(queries) == 1:
            return await self.search_memories(embedding, queries[0], params)
        table = queries[0].table_name or DEFAULT_TABLE
        if all((q.table_name or DEFAULT_TABLE) == table for q in queries):
            if leave_out is None:
                for query in queries:
                    if not query.filters_rows:  # the whole table: the others add nothing
                        return await self.search_memories(embedding, query, params)
            if (
                params.index_type == "flat"
                and all(q.filters_rows for q in queries)
                and (
                    leave_out is None
                    or (leave_out.limit is not None and leave_out.limit <= EXCLUDED_IN_SQL)
                )
            ):
                vector = as_vector(embedding)
                found = await here_or_after_worker(
                    self, lambda: self._search_sets_here(vector, queries, params, leave_out)
                )
                if found is not None:
                    return await self._paced(found)
        myself = cast("DatabaseAdapter", self)
        return await search_each(myself, embedding, queries, params, leave_out=leave_out)

    def _search_sets_here(
        self,
        embedding: F64,
        queries: Sequence[MemoryQuery],
        params: SearchParams,
        leave_out: MemoryQuery | None,
    ) -> list[tuple[Memory, float]] | None:
        """`_search_labelled` of several queries on the caller's thread (None: not now); when
        it cannot only because some of their label sets are not kept yet (a new speaker's
        first message), those are read here first (`_keep_sets`) and it is asked again."""
        if self._executor is None:
            return None

        def search(read: Read) -> list[tuple[Memory, float]] | None:
            found = self._search_labelled(read, embedding, queries, params, leave_out)
            if found is None and self._keep_sets(read, embedding, queries, params):
                found = self._search_labelled(read, embedding, queries, params, leave_out)
            return found

        # None when busy or locked: one query at a time, on the worker if need be
        return self._here(search)

    def _kept_sets(
        self, queries: Sequence[MemoryQuery], table: str, version: int
    ) -> list[tuple[MemoryQuery, I64 | None]] | None:
        """Each query with the label set kept for it at `version` (None: not kept); None when
        one of them is not one of `table`'s label filters (no label set can answer it)."""
        found = []
        for query in queries:
            where = label_filter(query)
            if where is None or (query.table_name or DEFAULT_TABLE) != table:
                return None
            found.append((query, self._labels.get(table, version, where)))
        return found

    def _keep_sets(
        self, read: Read, embedding: F64, queries: Sequence[MemoryQuery], params: SearchParams
    ) -> bool:
        """Read and keep the label sets of `queries` (one table's, exact search) that are not
        kept, at the version of the table's index, each of at most `LOOP_ROWS` rows (the index
        lock held: no write moves them meanwhile); whether any was read and all now are.

        Without it, 100 rooms' first messages of a new speaker, all in one loop turn, each
        found the speaker's set missing and went one search a scope (`search_each`: the
        conversation read as memories, a task a scope, two searches), before any of their
        searches had kept it: half the messages of `bench/pipeline.py`'s 100 rooms."""
        table = queries[0].table_name or DEFAULT_TABLE
        index = self._indexes.latest(table, params.index_type)
        if params.index_type != "flat" or index is None or len(embedding) != index.dim:
            return False
        found = self._kept_sets(queries, table, index.version)
        missing = [query for query, kept in found or () if kept is None]
        if not missing:
            return False
        version = index.version

        def keep(conn: sqlite3.Connection) -> bool:
            with self._snapshot(conn):
                if table_state(conn, table)[1] != version:
                    return False  # another process wrote: the worker reads them
                return all(
                    len(self._allowed(conn, query, table, version, LOOP_ROWS)) <= LOOP_ROWS
                    for query in missing
                )

        return read(keep)

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        kind = check_index_type(index_type)
        table = table_name or DEFAULT_TABLE
        while (build := await self._run(self._start_index, table, kind)) is not None:
            await asyncio.wait([asyncio.wrap_future(build)])  # the worker stays free meanwhile

    def _start_index(self, table: str, kind: IndexType) -> Future[VectorIndex] | None:
        """None once `table`'s `kind` index serves (or the table has no vectors), else the
        build to wait for (started if none was)."""
        with self._index_lock, self._snapshot(self._db) as conn:
            dim, version = table_state(conn, table)
            if dim is None:
                return None
            if self._indexes.get(table, kind, dim, version, lambda: self._load(table, dim)):
                return None
            return self._indexes.pending(table, kind)

    def _load(self, table: str, dim: int) -> tuple[Any, Any]:
        rows = self._db.execute(
            "SELECT seq, embedding FROM memories WHERE table_name = ? AND embedding IS NOT NULL"
            " ORDER BY seq",
            (table,),
        ).fetchall()
        labels, matrix = to_matrix(rows, dim)
        return np.asarray(labels, dtype=np.int64), matrix


def _shown(conn: sqlite3.Connection, table: str, query: MemoryQuery) -> tuple[set[int], int] | None:
    """The seqs of the rows `query` (of `table`) reads, and `table`'s version read with them
    (None: it reads none, so no version was read)."""
    where, values = where_clause(query)
    order = "ASC" if query.order == "asc" else "DESC"
    rows = conn.execute(
        f"SELECT seq, ({_VERSION_SQL}) FROM memories{where}"
        f" ORDER BY created_at {order}, id {order} LIMIT ?",
        [table, *values, query.limit],
    ).fetchall()
    return ({row[0] for row in rows}, rows[0][1]) if rows else None


def _beyond(
    labels: list[int], scores: list[float], shown: set[int], count: int
) -> tuple[list[int], list[float]]:
    """The best `count` hits (`labels`, best first, and their `scores`) not in `shown`."""
    kept = [i for i, label in enumerate(labels) if label not in shown][:count]
    return [labels[i] for i in kept], [scores[i] for i in kept]


def _version(conn: sqlite3.Connection, table: str) -> int | None:
    row = conn.execute(_VERSION_SQL, (table,)).fetchone()
    return None if row is None else int(row[0])


def _hits(
    rows: dict[int, tuple[Any, ...]], labels: list[int], scores: list[float], params: SearchParams
) -> list[tuple[Memory, float]]:
    """The best `params.k` of the hits `labels` (best first) whose row was read and is not in
    `params.exclude`, as memories decoding their fields when first read
    (`lazy_row_to_memory`; those left out never are)."""
    left_out = {memory_id.bytes for memory_id in params.exclude}
    found: list[tuple[Memory, float]] = []
    for label, score in zip(labels, scores, strict=True):
        row = rows.get(label)
        if row is None or (left_out and row[1] in left_out):
            continue
        found.append((lazy_row_to_memory(row), score))
        if len(found) == params.k:
            break
    return found
