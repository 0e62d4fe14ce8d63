"""The SQLite store's write path: writes made at once share one commit (group commit), on the
caller's thread or queued while the worker is busy, each still all or nothing; checkpoints
hold no write up; a process killed mid-write (SIGKILL) leaves no batch partly written and
loses no acknowledged one."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from builtin_plugins.sqlite import SqliteAdapter, worker
from contracts.memory import MemoryQuery
from contracts.storage import (
    BatchError,
    DimensionMismatchError,
    DuplicateMemoryError,
    SearchParams,
)

from .storage_helpers import ROOM, make_memory

ROOT = Path(__file__).resolve().parents[2]


async def _tick(ticks: list[float], count: int = 5) -> None:
    """Note the time every 2 ms on the loop, `count` times: whether its timers fire."""
    while len(ticks) < count:
        await asyncio.sleep(0.002)
        ticks.append(time.perf_counter())


async def test_writes_queued_behind_a_busy_worker_share_one_commit(tmp_path: Path) -> None:
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    assert db._conn is not None
    commits: list[str] = []
    db._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    hold = threading.Event()
    busy = asyncio.ensure_future(db._run(hold.wait, 10))  # the worker is busy: writes queue
    writes = [asyncio.ensure_future(db.create_memory(make_memory(i))) for i in range(8)]
    duplicate = make_memory(99)
    await asyncio.sleep(0.05)
    hold.set()
    await asyncio.gather(busy, *writes)
    assert commits == ["COMMIT"]  # 8 writes, one transaction
    # a failing write of a group is rolled back alone, the others commit
    await db.create_memory(duplicate)
    hold.clear()
    busy = asyncio.ensure_future(db._run(hold.wait, 10))
    ok = asyncio.ensure_future(db.create_memories_batch([make_memory(i) for i in range(3)]))
    bad = asyncio.ensure_future(db.create_memories_batch([make_memory(100), duplicate]))
    also = asyncio.ensure_future(db.create_memory(make_memory(101)))
    await asyncio.sleep(0.05)
    hold.set()
    await asyncio.gather(busy, ok, also)
    with pytest.raises(BatchError) as caught:
        await bad
    assert caught.value.index == 1 and isinstance(caught.value.cause, DuplicateMemoryError)
    assert await db.count_memories() == 8 + 1 + 3 + 1
    texts = {m.content.text for m in await db.get_memories(MemoryQuery())}
    assert "m100" not in texts  # the failed batch's first row was rolled back with it
    await db.close()


async def test_a_small_write_with_an_idle_worker_commits_on_the_callers_thread(
    tmp_path: Path,
) -> None:
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    assert db._conn is not None
    threads: list[str] = []
    db._conn.set_trace_callback(
        lambda sql: threads.append(threading.current_thread().name) if sql == "COMMIT" else None
    )
    await db.create_memory(make_memory(1, embedding=[1.0, 0.0]))
    assert threads == [threading.current_thread().name]
    # a big batch goes to the worker (a write inline holds the loop)
    await db.create_memories_batch([make_memory(i) for i in range(100, 200)])
    assert len(threads) == 2 and threads[1] != threading.current_thread().name
    # vector indexes stay in step with writes made inline
    await db.build_index("flat")
    await db.create_memory(make_memory(2, embedding=[0.0, 1.0]))
    found = await db.search_memories([0.0, 1.0], params=SearchParams(k=1))
    assert found[0][0].content.text == "m2"
    await db.close()


async def test_create_memory_bumps_its_tables_version_once_by_either_statement(
    tmp_path: Path,
) -> None:
    """A write bumps its table's version by exactly one (other processes' indexes rely on it):
    by a plain ``UPDATE`` when the row's dimension is the table's (or the row has none), by the
    ``RETURNING`` upsert (`rows.BUMP`) for a new table, a table without a dimension yet
    (another process may have just cleared it) or a dimension that differs (refused, nothing
    written); the version is read back when an index of the table is kept here, to bring it
    along (a search then finds the row without a rebuild)."""
    path = tmp_path / "x.sqlite3"
    db = await SqliteAdapter.open(path)
    assert db._conn is not None
    statements: list[str] = []
    db._conn.set_trace_callback(statements.append)

    def state(table: str = "facts") -> tuple[int | None, int]:
        with sqlite3.connect(path) as conn:
            row = conn.execute(
                "SELECT dimension, version FROM memory_tables WHERE table_name = ?", (table,)
            ).fetchone()
        return (row[0], row[1])

    def upserts() -> int:
        count = sum("ON CONFLICT" in sql for sql in statements)
        assert not any("version FROM" in sql for sql in statements)  # not kept: not read
        statements.clear()
        return count

    await db.create_memory(make_memory(0, table_name="facts"))  # a new table, no vector
    assert (state(), upserts()) == ((None, 1), 1)
    await db.create_memory(make_memory(1, table_name="facts", embedding=[1.0, 0.0, 0.0]))
    assert (state(), upserts()) == ((3, 2), 1)  # its dimension set
    await db.create_memory(make_memory(2, table_name="facts", embedding=[0.0, 1.0, 0.0]))
    await db.create_memory(make_memory(3, table_name="facts"))
    assert (state(), upserts()) == ((3, 4), 0)  # the plain UPDATEs
    with pytest.raises(DimensionMismatchError):
        await db.create_memory(make_memory(4, table_name="facts", embedding=[1.0, 0.0]))
    assert (state(), upserts()) == ((3, 4), 1)  # rolled back: no bump, no row
    assert await db.count_memories(MemoryQuery(table_name="facts")) == 4
    other = await SqliteAdapter.open(path)  # another process clears the table's vectors
    assert await other.reset_embeddings("facts") == 2
    await other.close()
    assert state() == (None, 5)
    await db.create_memory(make_memory(5, table_name="facts", embedding=[0.0, 1.0]))
    assert (state(), upserts()) == ((2, 6), 1)
    loads: list[str] = []
    load = db._load
    db._load = lambda table, dim: loads.append(table) or load(table, dim)  # type: ignore[method-assign]
    facts = MemoryQuery(table_name="facts")
    hits = await db.search_memories([0.0, 1.0], facts, SearchParams(k=1))
    assert [m.content.text for m, _ in hits] == ["m5"] and loads == ["facts"]  # an index kept
    statements.clear()
    await db.create_memory(make_memory(6, table_name="facts", embedding=[0.6, 0.8]))
    assert any("SELECT version FROM memory_tables" in sql for sql in statements)
    statements[:] = [sql for sql in statements if "version FROM" not in sql]
    assert (state(), upserts()) == ((2, 7), 0)  # the version read back to bring it along
    hits = await db.search_memories([0.6, 0.8], facts, SearchParams(k=1))
    assert [m.content.text for m, _ in hits] == ["m6"] and loads == ["facts"]  # not rebuilt
    await db.close()


async def test_a_writer_with_nothing_else_ready_commits_without_a_turn_of_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One room's messages: no other task could join a group, so the write commits at once
    (no yield, no poll for I/O); with another callback ready it yields once for company, and
    a task writing in a loop still yields every `YIELD_EVERY` seconds."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    monkeypatch.setattr(worker, "YIELD_EVERY", 60.0)
    await db.create_memory(make_memory(0))  # the loop's first write: yields
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.01)  # nothing left to run but this test
    assert worker._alone(loop)
    write = db.create_memory(make_memory(1))
    with pytest.raises(StopIteration):
        write.send(None)  # committed and acknowledged in one step
    loop.call_soon(lambda: None)
    assert not worker._alone(loop)
    write = db.create_memory(make_memory(2))
    assert write.send(None) is None  # the yield: writes made meanwhile would join the group
    assert [len(group) for group in db._groups.values()] == [1]
    with pytest.raises(StopIteration):
        write.send(None)
    assert not db._groups
    monkeypatch.setattr(worker, "YIELD_EVERY", 0.0)  # the loop turned too long ago
    await asyncio.sleep(0.01)
    assert worker._alone(loop)
    write = db.create_memory(make_memory(3))
    assert write.send(None) is None
    with pytest.raises(StopIteration):
        write.send(None)
    assert await db.count_memories() == 4
    await db.close()


async def test_a_lone_write_refused_or_held_up_is_answered_as_in_a_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write committed at once with nothing else ready (no group, no future) raises what it
    would in a group (a duplicate id: nothing written, the store goes on), and one finding
    another connection holding SQLite's write lock goes to the worker, which waits for it."""
    path = tmp_path / "x.sqlite3"
    db = await SqliteAdapter.open(path)
    monkeypatch.setattr(worker, "YIELD_EVERY", 60.0)
    first = make_memory(0)
    await db.create_memory(first)
    await asyncio.sleep(0.01)
    assert worker._alone(asyncio.get_running_loop())
    write = db.create_memory(first)
    with pytest.raises(DuplicateMemoryError):
        write.send(None)  # refused in its one step
    assert not db._groups and await db.count_memories() == 1
    await db.create_memory(make_memory(1))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    write = db.create_memory(make_memory(2))
    waits_for = write.send(None)  # not committed here: it waits for the worker's commit
    assert (isinstance(waits_for, asyncio.Future) and db._queue) or db._draining
    other.execute("COMMIT")
    for _ in range(500):
        if waits_for.done():
            break
        await asyncio.sleep(0.01)
    with pytest.raises(StopIteration):
        write.send(None)
    assert await db.count_memories() == 3
    other.close()
    await db.close()


async def test_a_small_read_after_a_write_uses_the_writes_connection_while_it_is_free(
    tmp_path: Path,
) -> None:
    """A room's history, read right after the message's write: on the caller's thread, from
    the connection that wrote (its page cache current), or the read-only one while the worker
    holds the writes' connection; the rows are the same either way."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    assert db._conn is not None and db._reader is not None
    used: list[str] = []
    db._conn.set_trace_callback(lambda sql: used.append("writes") if "SELECT" in sql else None)
    db._reader.set_trace_callback(lambda sql: used.append("reader") if "SELECT" in sql else None)
    for i in range(3):
        await db.create_memory(make_memory(i))
    query = MemoryQuery(limit=2, order="desc")
    latest = [m.content.text for m in await db.get_memories(query)]
    assert latest == ["m2", "m1"] and used == ["writes"]
    hold, taken = threading.Event(), threading.Event()

    def busy() -> None:
        taken.set()
        hold.wait(10)

    worker_busy = asyncio.ensure_future(db._run(busy))
    await asyncio.to_thread(taken.wait, 10)  # the worker holds the writes' connection
    assert [m.content.text for m in await db.get_memories(query)] == latest
    assert used == ["writes", "reader"]
    hold.set()
    await worker_busy
    await db.close()


async def test_writes_made_at_once_share_one_commit_on_the_callers_thread(
    tmp_path: Path,
) -> None:
    """Many tasks writing at once (100 rooms) with the worker idle: the writes of one turn of
    the loop commit together on the caller's thread, each acknowledged only after that
    commit; a failing one is rolled back alone and gets its own error."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    assert db._conn is not None
    commits: list[str] = []
    db._conn.set_trace_callback(
        lambda sql: commits.append(threading.current_thread().name) if sql == "COMMIT" else None
    )
    stored = make_memory(0)
    await db.create_memory(stored)
    assert len(commits) == 1

    async def write(i: int) -> int:
        await db.create_memory(make_memory(i, embedding=[1.0, float(i)]))
        # acknowledged: committed, and visible to a reader
        assert await db.get_memories(MemoryQuery(limit=1, order="desc")) != []
        return i

    writes = [asyncio.ensure_future(write(i)) for i in range(1, 51)]
    duplicate = asyncio.ensure_future(db.create_memory(stored))
    wrong_dimension = asyncio.ensure_future(db.create_memory(make_memory(99, embedding=[1.0])))
    assert await asyncio.gather(*writes) == list(range(1, 51))
    with pytest.raises(DuplicateMemoryError):
        await duplicate
    with pytest.raises(DimensionMismatchError):
        await wrong_dimension
    assert set(commits) == {threading.current_thread().name}
    assert len(commits) == 2  # the first write, then the 52 made at once in one transaction
    assert await db.count_memories() == 51
    texts = {m.content.text for m in await db.get_memories(MemoryQuery())}
    assert "m99" not in texts
    await db.close()


async def test_a_cancelled_writer_gathering_a_group_still_commits_the_others(
    tmp_path: Path,
) -> None:
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    first = asyncio.ensure_future(db.create_memory(make_memory(1)))
    others = [asyncio.ensure_future(db.create_memory(make_memory(i))) for i in range(2, 6)]
    await asyncio.sleep(0)  # the first write gathers this turn's group, the others join it
    assert [len(group) for group in db._groups.values()] == [5]
    first.cancel()
    await asyncio.gather(*others)
    with pytest.raises(asyncio.CancelledError):
        await first
    # the others are acknowledged and stored; the cancelled one stands, as a queued one does
    texts = [m.content.text for m in await db.get_memories(MemoryQuery(order="asc"))]
    assert texts == [f"m{i}" for i in range(1, 6)]
    await db.close()


async def test_writes_from_two_event_loops_each_commit_in_their_own_groups(
    tmp_path: Path,
) -> None:
    """An adapter used from a second thread's event loop too: each loop's writes gather in a
    group of their own (never one loop's caller acknowledged by another's thread)."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")

    async def writes(first: int) -> None:
        await asyncio.gather(*(db.create_memory(make_memory(i)) for i in range(first, first + 200)))

    other = threading.Thread(target=lambda: asyncio.run(writes(1000)))
    other.start()
    await writes(0)
    await asyncio.to_thread(other.join)
    assert await db.count_memories() == 400
    await db.close()


async def test_the_wal_is_checkpointed_while_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Auto-checkpoints are off (a commit on the caller's thread must not sync): the worker
    checkpoints the WAL, copying its pages on a connection of its own so that writes go on
    meanwhile on the caller's thread, and the WAL is reused from its start."""
    monkeypatch.setattr(worker, "CHECKPOINT_PAGES", 50)
    path = tmp_path / "x.sqlite3"
    db = await SqliteAdapter.open(path)
    assert db._conn is not None
    commits: list[tuple[float, str]] = []
    db._conn.set_trace_callback(
        lambda sql: (
            commits.append((time.perf_counter(), threading.current_thread().name))
            if sql == "COMMIT"
            else None
        )
    )
    copying: list[tuple[float, float]] = []
    copy = db._copy_wal

    def slow_copy() -> int:  # a slow disk: the writes meanwhile must not wait for it
        started = time.perf_counter()
        time.sleep(0.02)
        frames = copy()
        copying.append((started, time.perf_counter()))
        return frames

    monkeypatch.setattr(db, "_copy_wal", slow_copy)
    for i in range(400):
        await db.create_memory(make_memory(i, note="x" * 2000))
        if i % 50 == 49:
            await db._run(lambda: None)  # the checkpoint this round of writes asked for ran
    assert len(copying) >= 8
    meanwhile = [
        thread for at, thread in commits if any(start < at < end for start, end in copying)
    ]
    assert len(meanwhile) > 10
    assert set(meanwhile) == {threading.current_thread().name}
    # the WAL header's checkpoint sequence number counts the times it started over: never,
    # were checkpoints only racing the writes (none ending with every page copied)
    header = path.with_name(path.name + "-wal").read_bytes()[:16]
    assert int.from_bytes(header[12:16], "big") >= 4
    assert await db.count_memories() == 400
    await db.close()


async def test_a_write_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    """Another connection holds SQLite's write lock: the write is not refused and never
    blocks the loop; it goes to the worker, which waits for the lock."""
    path = tmp_path / "x.sqlite3"
    db = await SqliteAdapter.open(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    write = asyncio.ensure_future(db.create_memory(make_memory(1)))
    group = asyncio.gather(*(db.create_memory(make_memory(i)) for i in range(2, 7)))
    started = time.perf_counter()
    await asyncio.sleep(0.2)  # the loop runs meanwhile
    assert time.perf_counter() - started < 1.0 and not write.done() and not group.done()
    other.execute("COMMIT")
    await write
    await group
    assert await db.count_memories() == 6
    other.close()
    await db.close()


def _start_writer(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.storage.sqlite_writer_child", str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _acknowledged(process: subprocess.Popen[str], count: int) -> dict[str, int]:
    assert process.stdout is not None
    acked: dict[str, int] = {}
    while len(acked) < count:
        line = process.stdout.readline()
        assert line, f"the writer exited early: {process.communicate()[1]}"
        batch, size = line.split()
        acked[batch] = int(size)
    return acked


async def test_kill_9_mid_write_leaves_no_partial_batch_and_loses_no_acknowledged_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crash.sqlite3"
    process = _start_writer(path)
    try:
        acked = await asyncio.to_thread(_acknowledged, process, 300)
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 30)
    finally:
        if process.poll() is None:
            process.kill()
    db = await SqliteAdapter.open(path)  # recovers the WAL
    try:
        rows = await db.get_memories(MemoryQuery())
    finally:
        await db.close()
    sizes = {m.metadata["batch"]: m.metadata["size"] for m in rows}
    counts = Counter(m.metadata["batch"] for m in rows)
    assert all(counts[batch] == size for batch, size in sizes.items()), "a batch stored in part"
    missing = [batch for batch in acked if batch not in counts]
    assert not missing, f"{len(missing)} acknowledged batches lost"
    assert len(counts) >= len(acked)


@pytest.mark.parametrize("call", ["search", "read"])
async def test_a_task_searching_or_reading_in_a_loop_lets_the_other_tasks_run(
    tmp_path: Path, call: str
) -> None:
    """A search or a small read answered on the loop's thread never suspends: a task making
    them in a loop still lets the loop turn every `YIELD_EVERY` (its timers fire, the other
    tasks run), where it used to hold it for good (tests/storage/sqlite_writer_child.py's
    readers starved its writers: the crash test hung)."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    await db.create_memories_batch(
        [make_memory(i, embedding=[1.0, float(i), 0.5]) for i in range(20)]
    )
    query = MemoryQuery(room_id=ROOM, table_name="messages", limit=5)
    answered_here = 0

    async def one() -> None:
        nonlocal answered_here
        calls = db._worker_calls
        if call == "search":
            await db.search_memories([1.0, 2.0, 0.5], query, SearchParams(k=3))
        else:
            await db.get_memories(query)
        answered_here += db._worker_calls == calls

    ticks: list[float] = []

    async def busy() -> int:
        started, calls = time.perf_counter(), 0
        while time.perf_counter() - started < 0.5:  # bounded: the old code ran it all through
            await one()
            calls += 1
        return calls

    await one()  # the label set is built, the reader connection open
    ticking = asyncio.ensure_future(_tick(ticks))
    await asyncio.sleep(0)
    started = time.perf_counter()
    calls = await busy()
    assert answered_here > calls // 2  # the calls were answered here, not by the worker
    assert len(ticks) == 5 and ticks[-1] - started < 0.4, "the loop was held by the busy task"
    await ticking
    await db.close()


async def test_tasks_taking_turns_at_reads_answered_here_do_not_yield_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many tasks at once (100 rooms' messages), each reading on the loop's thread: a task
    whose read comes after another task's has suspended since its own last one (the loop
    turned for it), so its read answers in the same step, even when the store's last turn
    is long ago; only the first read, with no other task's before it, yields."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    await db.create_memories_batch([make_memory(i) for i in range(5)])
    monkeypatch.setattr(worker, "YIELD_EVERY", 0.0)  # the store's last turn: always too long ago
    query = MemoryQuery(room_id=ROOM, table_name="messages", limit=3)
    events: list[tuple[str, int]] = []

    async def one(i: int) -> None:
        events.append(("start", i))
        assert len(await db.get_memories(query)) == 3
        events.append(("done", i))

    await asyncio.gather(*(one(i) for i in range(10)))
    in_one_step = sum(
        events[at + 1] == ("done", i) for at, (what, i) in enumerate(events) if what == "start"
    )
    assert in_one_step == 9, events  # all but the first (which yielded) answered at once
    await db.close()


async def test_two_tasks_reading_in_loops_still_let_the_loop_turn(tmp_path: Path) -> None:
    """Two tasks each reading in a loop (answered on the loop's thread) take turns without
    yielding at the other's reads, yet each still yields every `YIELD_EVERY` of its own run:
    the loop's timers fire and other tasks run meanwhile."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    await db.create_memories_batch([make_memory(i) for i in range(20)])
    query = MemoryQuery(room_id=ROOM, table_name="messages", limit=5)
    ticks: list[float] = []

    async def busy() -> int:
        began, calls = time.perf_counter(), 0
        while time.perf_counter() - began < 0.5:
            await db.get_memories(query)
            calls += 1
        return calls

    await db.get_memories(query)
    ticking = asyncio.ensure_future(_tick(ticks))
    await asyncio.sleep(0)
    started = time.perf_counter()
    calls = await asyncio.gather(busy(), busy())
    assert min(calls) > 10  # both ran
    assert len(ticks) == 5 and ticks[-1] - started < 0.4, "the loop was held by the busy tasks"
    await ticking
    await db.close()
