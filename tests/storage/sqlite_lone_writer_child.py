"""A process writing one room's memories one awaited write at a time until it is killed (used by
test_storage_sqlite_lone_crash.py): the SQLite store's lone-write path, where a write made
while the worker thread is idle commits on the caller's thread at once (`SqliteCore._submit`),
message after message, as one room's pipeline writes.

Usage: ``python -m tests.storage.sqlite_lone_writer_child PATH MODE``. MODE ``one``:
``create_memory`` (one row, its table's version bumped in the same transaction); ``batch``:
``create_memories_batch`` of 1 to 8 rows (another write step); ``replace``: ``replace_memories``
of the batch written last by a new one of 1 to 8 rows (the knowledge base's write: deletes and
inserts in one transaction). Every fifth memory has no vector. After each write a
room-filtered exact search, as the recall provider makes: the table's label set is kept, so
each write also brings it (and the index) along. Memories are numbered on from those in the
file; each one's text, metadata and vector follow from its number, its batch and its write's
number (`expected`: a write's number is the table's version before it). Checkpoints are made
often (`CHECKPOINT_PAGES`), so a kill also lands during them.

Once a write has returned (acknowledged) it prints ``ID,ID,... WRITE LONE HERE WORKER``
(flushed): the ids it wrote and its number, then how many writes so far committed by the lone
path (no group, no future), as a group on the caller's thread, and on the worker thread; the
test checks that the lone path is the one taken."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

from builtin_plugins.sqlite import SqliteAdapter, worker
from contracts.memory import Content, Memory, MemoryQuery
from contracts.storage import SearchParams
from contracts.vector import Vector

AGENT = UUID("00000000-0000-4000-8000-00000000000a")
ROOM = UUID("00000000-0000-4000-8000-0000000000f1")
USER = UUID("00000000-0000-4000-8000-0000000000e1")
MODES = ("one", "batch", "replace")


def memory_id(n: int) -> UUID:
    return UUID(int=(0xC0FFEE << 96) | n)


def vector(n: int) -> list[float] | None:
    """Memory `n`'s vector (None for every fifth: a row without one)."""
    return None if n % 5 == 4 else [1.0, float(n % 101), 0.5]


def expected(n: int, batch: str, size: int, write: int) -> Memory:
    return Memory(
        id=memory_id(n),
        agent_id=AGENT,
        entity_id=USER,
        room_id=ROOM,
        content=Content(text=f"message {n}"),
        metadata={"n": n, "batch": batch, "size": size, "write": write},
        embedding=None if (values := vector(n)) is None else Vector(values),
    )


class Counts:
    """Write commits by path, counted on the adapter's own methods (each still runs as is)."""

    def __init__(self, db: SqliteAdapter) -> None:
        self.lone = self.here = self.worker = 0
        self._grouped = False
        main = threading.get_ident()
        try_here, commit_here, commit_group = db._try_here, db._commit_here, db._commit_group

        def counted_try(steps: list[Any]) -> Any:
            outcomes = try_here(steps)
            if outcomes is not None and threading.get_ident() == main:
                if self._grouped:
                    self.here += 1
                else:
                    self.lone += 1  # `_submit`'s lone branch: no group, no future
            return outcomes

        def counted_here(jobs: list[Any]) -> None:
            self._grouped = True
            try:
                commit_here(jobs)
            finally:
                self._grouped = False

        def counted_group(steps: list[Any]) -> Any:
            self.worker += 1
            return commit_group(steps)

        db._try_here = counted_try  # type: ignore[method-assign]
        db._commit_here = counted_here  # type: ignore[method-assign]
        db._commit_group = counted_group  # type: ignore[method-assign]


async def run(path: Path, mode: str) -> None:
    worker.CHECKPOINT_PAGES = 40  # checkpoints (and WAL restarts) every few dozen writes
    db = await SqliteAdapter.open(path)
    counts = Counts(db)
    stored = await db.get_memories(MemoryQuery(table_name="messages", with_embeddings=False))
    n = max((int(m.metadata["n"]) + 1 for m in stored), default=0)
    write = max((int(m.metadata["write"]) + 1 for m in stored), default=0)
    previous = [m.id for m in stored]  # in mode replace, the batch written last
    rng = random.Random(n)
    query = MemoryQuery(agent_id=AGENT, room_id=ROOM, table_name="messages", limit=8)
    while True:
        size = 1 if mode == "one" else rng.randint(1, 8)
        batch = f"b{n}"
        memories = [expected(i, batch, size, write) for i in range(n, n + size)]
        if mode == "one":
            await db.create_memory(memories[0])
        elif mode == "batch":
            await db.create_memories_batch(memories)
        else:
            await db.replace_memories(previous, memories)
            previous = [m.id for m in memories]
        line = ",".join(str(m.id) for m in memories)
        print(line, write, counts.lone, counts.here, counts.worker, flush=True)
        n, write = n + size, write + 1
        await db.search_memories([1.0, float(n % 101), 0.5], query, SearchParams(k=3))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in MODES:
        sys.exit(f"usage: {sys.argv[0]} PATH {{{'|'.join(MODES)}}}")
    asyncio.run(run(Path(sys.argv[1]), sys.argv[2]))
