"""`SqliteAdapter`: the default `DatabaseAdapter`, one SQLite file in WAL mode.

Database calls run on one dedicated worker thread (stdlib sqlite3 blocks), so the event loop never
waits on disk. Writes are ``BEGIN IMMEDIATE`` transactions: a batch commits whole or rolls back
whole, and a call returns only once its transaction has committed. Writes queued while the worker
is busy share one transaction (group commit: a savepoint each, so a failing batch is rolled back
alone and the others commit). A small write while the worker is idle commits at once on the
caller's thread, on the worker's connection (under a lock), without waiting for SQLite's lock
(another process holding it: the write goes to the worker); the connection never checkpoints on
commit (the worker does): in WAL mode with ``synchronous`` NORMAL a commit appends to the WAL
without an fsync, and the hop to the worker and back costs more than the write. Small reads (a
room's history) are answered there too, from a read-only connection, as approximate searches are
(`_search_here`).

Vector indexes (host.vectors) are built lazily on the first ``ivf``/``hnsw``/``flat`` search of a
table and kept in step with this adapter's writes; each table carries a version bumped by every
write, so an index that missed a write (another process sharing the file) is rebuilt. They are not
persisted: the table is the only source of truth, and a rebuild (seconds for 100k rows) is cheaper
than keeping a second file consistent across crashes and writers.

The methods live in modules by job: worker.py (connections, the worker thread, inline calls,
group commit), rows.py (SQL text and row decoding), writes.py, reads.py, search.py (search and
index upkeep).
"""

from __future__ import annotations

from .reads import SqliteReads
from .rows import embedding_blob, from_micros, row_to_memory, to_micros, where_clause
from .search import SqliteSearch
from .worker import CHECKPOINT_PAGES, INLINE_ROWS
from .writes import SqliteWrites

__all__ = [
    "CHECKPOINT_PAGES",
    "INLINE_ROWS",
    "SqliteAdapter",
    "embedding_blob",
    "from_micros",
    "row_to_memory",
    "to_micros",
    "where_clause",
]


class SqliteAdapter(SqliteReads, SqliteWrites, SqliteSearch):
    """A `DatabaseAdapter` over one SQLite file. Create with ``await SqliteAdapter.open(path)``."""

    backend = "sqlite"

    def __repr__(self) -> str:
        return f"SqliteAdapter({str(self.path)!r})"
