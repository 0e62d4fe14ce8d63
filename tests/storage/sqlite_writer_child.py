"""A process writing memory batches into a SQLite file until it is killed (used by
test_storage_sqlite_writes.py).

Usage: ``python -m tests.storage.sqlite_writer_child PATH``. 20 tasks write batches of 1 to 90
memories at once (small ones commit on the loop's thread, the others and those queued behind
a busy worker share group commits) while 4 tasks keep searching (the worker stays busy); each
memory's metadata names its batch and the batch's size. ``batch size`` is printed once
``create_memories_batch`` has returned (acknowledged)."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from uuid import uuid4

from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import Content, Memory, MemoryQuery
from contracts.storage import SearchParams

AGENT, ROOM = uuid4(), uuid4()


def memory(batch: str, size: int, i: int) -> Memory:
    return Memory(
        agent_id=AGENT,
        entity_id=uuid4(),
        room_id=ROOM,
        content=Content(text=f"{batch} {i}"),
        metadata={"batch": batch, "size": size},
        embedding=[1.0, float(i), 0.5],
    )


async def writer(db: SqliteAdapter, seed: int) -> None:
    rng = random.Random(seed)
    while True:
        batch, size = uuid4().hex, rng.choice((1, 1, 2, 5, 30, 90))
        await db.create_memories_batch([memory(batch, size, i) for i in range(size)])
        print(batch, size, flush=True)


async def reader(db: SqliteAdapter) -> None:
    while True:
        await db.search_memories([1.0, 2.0, 0.5], MemoryQuery(room_id=ROOM), SearchParams(k=3))


async def run(path: Path) -> None:
    db = await SqliteAdapter.open(path)
    await asyncio.gather(*(writer(db, i) for i in range(20)), *(reader(db) for _ in range(4)))


if __name__ == "__main__":
    asyncio.run(run(Path(sys.argv[1])))
