"""What only the SQLite backend has: a real file, WAL, migrations, other writers, its thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from builtin_plugins.sqlite import SqliteAdapter
from builtin_plugins.sqlite.schema import SCHEMA_VERSION
from contracts.memory import MemoryQuery, MemoryUpdate
from contracts.storage import SearchParams, StorageError

from .storage_helpers import AGENT, SEARCH_CONNECTIONS, make_memory, searching_through, stored


async def test_file_wal_migrations_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "memories.sqlite3"
    db = await SqliteAdapter.open(path)
    memory = make_memory(1, embedding=[1.0, 2.0])
    await db.create_memory(memory)
    await db.close()
    assert path.exists()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [r[0] for r in raw.execute("SELECT version FROM schema_migrations")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    raw.close()
    again = await SqliteAdapter.open(path)  # migrations are not re-applied
    assert await again.get_memory(memory.id) == stored(memory)
    assert await again.embedding_dimension("messages") == 2
    results = await again.search_memories(
        [1.0, 2.0], params=SearchParams(index_type="hnsw")
    )  # rebuilt on demand
    assert [m.id for m, _ in results] == [memory.id]
    await again.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    await (await SqliteAdapter.open(path)).close()
    raw = sqlite3.connect(path)
    raw.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from the future', '2099-01-01')",
        (SCHEMA_VERSION + 1,),
    )
    raw.commit()
    raw.close()
    with pytest.raises(
        StorageError, match=rf"future.sqlite3 has schema version {SCHEMA_VERSION + 1}"
    ):
        await SqliteAdapter.open(path)


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=r"garbage\.sqlite3"):
        await SqliteAdapter.open(path)


async def test_closed_adapter_refuses_calls(tmp_path: Path) -> None:
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    await db.close()
    await db.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        await db.get_memories(MemoryQuery())


async def test_queries_run_on_a_worker_thread(tmp_path: Path) -> None:
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    threads: list[str] = []
    assert db._conn is not None
    db._conn.set_trace_callback(lambda _sql: threads.append(threading.current_thread().name))
    # (a small write or history read while the worker is idle runs on the loop's thread:
    # tests/storage/test_storage_sqlite_writes.py)
    await db.create_memories_batch([make_memory(i) for i in range(100)])
    await db.get_memories(MemoryQuery())
    await db.count_memories()
    assert threads and threading.main_thread().name not in threads
    # While the worker thread is busy, the event loop keeps running other tasks.
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await db.create_memories_batch(
        [make_memory(i, embedding=[1.0, float(i)]) for i in range(20_000)]
    )
    task.cancel()
    assert ticks > 10
    await db.close()


async def test_another_writer_on_the_same_file_is_seen_by_indexes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    await one.create_memories_batch([make_memory(i, embedding=[1.0, float(i)]) for i in range(10)])
    for kind in ("flat", "ivf", "hnsw"):
        await one.build_index(kind)  # type: ignore[arg-type]
        results = await one.search_memories([0.0, -1.0], params=SearchParams(k=1, index_type=kind))  # type: ignore[arg-type]
        assert results[0][0].content.text == "m0"
    newcomer = make_memory(99, embedding=[0.0, -1.0])
    await two.create_memory(newcomer)  # `one` never saw this write
    await two.update_memory(MemoryUpdate(id=newcomer.id, content=newcomer.content))
    for kind in ("flat", "ivf", "hnsw"):
        # answered exactly while the stale index is rebuilt, then by the rebuilt index
        results = await one.search_memories([0.0, -1.0], params=SearchParams(k=1, index_type=kind))  # type: ignore[arg-type]
        assert results[0][0].id == newcomer.id
        await one.build_index(kind)  # type: ignore[arg-type]
        results = await one.search_memories([0.0, -1.0], params=SearchParams(k=1, index_type=kind))  # type: ignore[arg-type]
        assert results[0][0].id == newcomer.id
    # Both write concurrently: WAL + busy timeout serialise them, nothing is lost.
    await asyncio.gather(
        one.create_memories_batch([make_memory(100 + i) for i in range(200)]),
        two.create_memories_batch([make_memory(400 + i) for i in range(200)]),
    )
    assert await one.count_memories() == await two.count_memories() == 411
    await one.close()
    await two.close()


class _WriteAfterVersionRead:
    """A connection proxy that runs `write` once, right after the next read of a table version:
    another process committing between the statements of one search."""

    def __init__(self, conn: sqlite3.Connection, write: Callable[[], object]) -> None:
        self._conn, self._write = conn, write

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, *args)
        if sql.startswith("SELECT dimension, version FROM memory_tables") and self._write:
            write, self._write = self._write, None
            write()
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
async def test_a_search_reads_one_snapshot(tmp_path: Path, index_type: str) -> None:
    """A write committed by another process during a search is not half seen: the newest row
    deleted and a row of another table inserted in its place (SQLite reuses the highest rowid,
    the index label) made the search return that other table's row under the deleted one's
    score."""
    path = tmp_path / "shared.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(5)]
    await one.create_memories_batch(batch)
    kind: Any = index_type
    await one.build_index(kind)
    intruder = make_memory(99, table_name="other")

    def other_process() -> None:  # two's own write path, run synchronously in one's search
        assert two._delete_batch([batch[4].id]) == 1
        two._create_batch([intruder], None)

    real = one._conn
    assert real is not None
    one._conn = _WriteAfterVersionRead(real, other_process)  # type: ignore[assignment]
    one._reader = None  # the worker's path (the loop thread's: the test below)
    try:
        results = await one.search_memories([0.0, 1.0], params=SearchParams(k=2, index_type=kind))
    finally:
        one._conn = real
    assert await one.get_memory(intruder.id) is not None  # the write did happen, mid-search
    assert [m.id for m, _ in results] == [batch[4].id, batch[3].id]  # as of the search's start
    assert all(m.table_name == "messages" for m, _ in results)
    after = await one.search_memories([0.0, 1.0], params=SearchParams(k=2, index_type=kind))
    assert [m.id for m, _ in after] == [batch[3].id, batch[2].id]
    await one.close()
    await two.close()


async def test_keyset_pages_use_an_index(tmp_path: Path) -> None:
    db = await SqliteAdapter.open(tmp_path / "plan.sqlite3")
    await db.close()
    raw = sqlite3.connect(tmp_path / "plan.sqlite3")
    for where in ("", "WHERE table_name = ? AND", "WHERE room_id = ? AND"):
        clause = (
            f"{where} (created_at, id) > (?, ?)" if where else "WHERE (created_at, id) > (?, ?)"
        )
        params = (["x"] if "table" in where else [b"r"] if where else []) + [0, b""]
        plan = " ".join(
            str(r[-1])
            for r in raw.execute(
                f"EXPLAIN QUERY PLAN SELECT * FROM memories {clause}"
                " ORDER BY created_at, id LIMIT 100",
                params,
            )
        )
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
    raw.close()


async def test_a_rooms_latest_memories_read_the_rooms_rows_only(tmp_path: Path) -> None:
    """An agent's history in one room of many (each message's prompt reads it): the room's
    index, not the agent's, which would walk every room's rows to find this one's."""
    db = await SqliteAdapter.open(tmp_path / "rooms.sqlite3")
    rooms = [uuid4() for _ in range(50)]
    await db.create_memories_batch(
        [make_memory(i * 50 + r, room_id=room) for i in range(20) for r, room in enumerate(rooms)]
    )
    query = MemoryQuery(
        agent_id=AGENT, room_id=rooms[0], table_name="messages", order="desc", limit=11
    )
    assert db._reader is not None
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db._reader.set_progress_handler(count, 10)  # every 10 SQLite VM instructions
    found = await db.get_memories(query)
    db._reader.set_progress_handler(None, 0)
    assert [m.content.text for m in found] == [f"m{i * 50}" for i in range(19, 8, -1)]
    # the 11 rows read: ~300 instructions; walking the agent's 1,000 rows took ~3,000
    assert steps[0] < 60, steps[0]
    await db.close()


class _WriteBeforeRowsRead(_WriteAfterVersionRead):
    """The same proxy, writing right before the statement that reads a search's rows."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("SELECT seq, id") and self._write:
            write, self._write = self._write, None
            write()
        return self._conn.execute(sql, *args)


@pytest.mark.parametrize("via", SEARCH_CONNECTIONS)
@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
async def test_a_search_on_the_loop_thread_reads_one_snapshot(
    tmp_path: Path, index_type: str, via: str
) -> None:
    """An ANN search over a current index runs on the event-loop thread (no hop to the
    worker), on the writes' connection while the worker is not using it, else on the reader.
    Another process committing between its index search and its rows read (the newest row
    deleted, another table's row taking its rowid) changes the table's version that the rows
    statement reads too: the search is answered again, on the worker, as of after the write,
    never with the other table's row."""
    path = tmp_path / "shared.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(5)]
    await one.create_memories_batch(batch)
    kind: Any = index_type
    await one.build_index(kind)
    assert one._reader is not None and one._conn is not None and one._executor is not None
    threads: list[str] = []
    for conn in (one._reader, one._conn):
        conn.set_trace_callback(lambda _sql: threads.append(threading.current_thread().name))
    # With the worker thread held busy, the search is still answered: on the loop thread.
    held = threading.Event()
    blocker = one._executor.submit(held.wait, 10)
    try:
        results = await asyncio.wait_for(
            one.search_memories([0.0, 1.0], params=SearchParams(k=2, index_type=kind)), timeout=5
        )
    finally:
        held.set()
        blocker.result()
    assert [m.id for m, _ in results] == [batch[4].id, batch[3].id]
    assert results[0][0].embedding == [1.0, 4.0]
    bare = await one.search_memories(
        [0.0, 1.0], params=SearchParams(k=2, index_type=kind, with_embeddings=False)
    )
    assert [(m.id, m.embedding) for m, _ in bare] == [(batch[4].id, None), (batch[3].id, None)]
    assert threads and set(threads) == {threading.main_thread().name}
    for conn in (one._reader, one._conn):
        conn.set_trace_callback(None)

    intruder = make_memory(99, table_name="other")

    def other_process() -> None:
        assert two._delete_batch([batch[4].id]) == 1
        two._create_batch([intruder], None)

    with searching_through(one, via, lambda conn: _WriteBeforeRowsRead(conn, other_process)):
        results = await one.search_memories([0.0, 1.0], params=SearchParams(k=2, index_type=kind))
    assert await one.get_memory(intruder.id) is not None  # the write did happen, mid-search
    assert [m.id for m, _ in results] == [batch[3].id, batch[2].id]  # as of after it
    await one.close()
    await two.close()


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
async def test_search_reads_few_and_many_rows_by_seq(tmp_path: Path, index_type: Any) -> None:
    """The k rows of a search are read by ``seq IN (?, ...)`` up to 256 of them and as one JSON
    list past that: both give every hit, in score order, filtered or not."""
    db = await SqliteAdapter.open(tmp_path / "many.sqlite3")
    try:
        batch = [make_memory(i, embedding=[1.0, i / 400]) for i in range(400)]
        await db.create_memories_batch(batch)
        await db.build_index(index_type)
        for k in (10, 256, 257, 400):
            for query in (None, MemoryQuery(entity_id=batch[0].entity_id)):
                search = SearchParams(k=k, index_type=index_type)
                hits = await db.search_memories([1.0, 0.0], query, search)
                assert len(hits) == k
                assert [m.id for m, _ in hits] == [m.id for m in batch[:k]]
                assert all(m == stored(b) for (m, _), b in zip(hits, batch, strict=False))
    finally:
        await db.close()
