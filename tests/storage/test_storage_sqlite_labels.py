"""The SQLite store's label sets (builtin_plugins/sqlite/labels.py): a filtered search reads the
rows its filter allows once, then keeps them in step with the store's own writes; another
process writing the same file makes them stale (its version), and they are read again. Whatever
happens to the table, a filtered search answers what an exact search over the table's current
rows answers."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest

from builtin_plugins.sqlite.adapter import SqliteAdapter
from builtin_plugins.sqlite.labels import LabelSets
from contracts.memory import Memory, MemoryQuery, MemoryUpdate
from contracts.storage import SearchParams, search_each

from .storage_helpers import AGENT, OTHER_AGENT, SEARCH_CONNECTIONS, make_memory, searching_through

ROOMS = [UUID(int=0xF0 + i) for i in range(3)]
ENTITIES = [UUID(int=0xE0 + i) for i in range(3)]
AGENTS = [AGENT, OTHER_AGENT]
DIM = 8


def _filters() -> list[MemoryQuery]:
    return [
        MemoryQuery(room_id=ROOMS[0]),
        MemoryQuery(entity_id=ENTITIES[1]),
        MemoryQuery(agent_id=AGENT, room_id=ROOMS[1]),
        MemoryQuery(agent_id=AGENT, entity_id=ENTITIES[0]),
        MemoryQuery(agent_id=OTHER_AGENT),
        MemoryQuery(agent_id=AGENT, room_id=ROOMS[2], entity_id=ENTITIES[2]),
    ]


async def _reference(
    db: SqliteAdapter, vector: np.ndarray, query: MemoryQuery | list[MemoryQuery], k: int
) -> list[UUID]:
    """The exact answer: every row the filter (any of the filters) allows, scored by cosine,
    best `k`."""
    queries = query if isinstance(query, list) else [query]
    rows = {
        row.id: row
        for q in queries
        for row in await db.get_memories(q.model_copy(update={"with_embeddings": True}))
    }.values()
    scored = []
    for row in rows:
        if row.embedding is None:
            continue
        stored = np.asarray(row.embedding, dtype=np.float64)
        score = float(stored @ vector / (np.linalg.norm(stored) * np.linalg.norm(vector)))
        scored.append((-score, row.id))
    return [memory_id for _, memory_id in sorted(scored)[:k]]


def _memory(rng: random.Random, i: int) -> Memory:
    return make_memory(
        i,
        embedding=[rng.uniform(-1, 1) for _ in range(DIM)],
        agent_id=rng.choice(AGENTS),
        room_id=rng.choice(ROOMS),
        entity_id=rng.choice(ENTITIES),
    )


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
@pytest.mark.parametrize("seed", [1, 2])
async def test_filtered_searches_follow_every_write_of_this_and_another_process(
    tmp_path: Path, index_type: Any, seed: int
) -> None:
    """Creates, deletes and updates (embeddings set and cleared), by this store and by another
    one on the same file (another process: its writes bump the table's version without this
    store seeing them), the newest row deleted (its rowid is reused), interleaved with filtered
    searches: each search answers exactly what the table holds at that moment."""
    rng = random.Random(seed)
    path = tmp_path / "labels.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    try:
        ids: list[UUID] = []
        first = [_memory(rng, i) for i in range(40)]
        await one.create_memories_batch(first)
        ids += [m.id for m in first]
        for step in range(200):
            writer = one if rng.random() < 0.7 else two
            action = rng.random()
            if action < 0.45 or not ids:
                batch = [_memory(rng, 100 + step * 3 + j) for j in range(rng.randint(1, 3))]
                await writer.create_memories_batch(batch)
                ids += [m.id for m in batch]
            elif action < 0.55:
                gone = ids.pop(rng.randrange(len(ids)))
                assert await writer.delete_memory(gone)
            elif action < 0.65:  # the newest row: SQLite gives its rowid to the next row
                assert await writer.delete_memory(ids.pop())
            elif action < 0.8:
                target = rng.choice(ids)
                vector = None if rng.random() < 0.3 else [rng.uniform(-1, 1) for _ in range(DIM)]
                await writer.update_memory(MemoryUpdate(id=target, embedding=vector))
            elif action < 0.9:  # a replace: rows deleted and written in one transaction
                gone = ids.pop(rng.randrange(len(ids)))
                batch = [_memory(rng, 1000 + step)]
                await writer.replace_memories([gone], batch)
                ids += [m.id for m in batch]
            else:  # a content update: the version moves, the rows do not
                await writer.update_memory(
                    MemoryUpdate(id=rng.choice(ids), metadata={"step": step})
                )
            if rng.random() < 0.5:
                continue  # writes in a row, by both stores, before the next searches
            vector = np.asarray([rng.uniform(-1, 1) for _ in range(DIM)])
            for query in _filters():
                found = await one.search_memories(
                    vector.tolist(), query, SearchParams(k=8, index_type=index_type)
                )
                expected = await _reference(one, vector, query, 8)
                assert [m.id for m, _ in found] == expected, (step, query)
                assert all(query.matches(m) for m, _ in found)
            filters = _filters()
            for pair in ([filters[0], filters[1]], [filters[2], filters[3], filters[5]]):
                # several filters at once (recall's scopes): their kept sets scored together
                found = await one.search_memories_any(
                    vector.tolist(), pair, SearchParams(k=8, index_type=index_type)
                )
                expected = await _reference(one, vector, pair, 8)
                assert [m.id for m, _ in found] == expected, (step, pair)
                # and beyond a room's latest rows (recall's recent conversation)
                shown = MemoryQuery(room_id=ROOMS[0], limit=5)
                found = await one.search_memories_any(
                    vector.tolist(), pair, SearchParams(k=8, index_type=index_type), leave_out=shown
                )
                recent = {m.id for m in await one.get_memories(shown)}
                beyond = [i for i in await _reference(one, vector, pair, 20) if i not in recent]
                assert [m.id for m, _ in found] == beyond[:8], (step, pair)
    finally:
        await one.close()
        await two.close()


async def test_a_kept_filter_is_not_read_again_and_is_read_after_another_process_writes(
    tmp_path: Path,
) -> None:
    """The rows of a filter are read by the first search; later searches (after this store's
    writes too) read only the hits, on the loop's thread; a write by another process makes the
    next search read them again, and it finds that write's row."""
    path = tmp_path / "kept.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    try:
        await one.create_memories_batch(
            [make_memory(i, embedding=[1.0, i / 10], room_id=ROOMS[i % 2]) for i in range(20)]
        )
        assert one._conn is not None and one._reader is not None
        statements: list[tuple[str, str]] = []

        def trace(sql: str) -> None:
            statements.append((threading.current_thread().name, sql))

        one._conn.set_trace_callback(trace)
        one._reader.set_trace_callback(trace)
        room = MemoryQuery(room_id=ROOMS[0])
        scans = lambda: [s for _, s in statements if s.startswith("SELECT seq FROM memories")]  # noqa: E731

        await one.search_memories([1.0, 0.0], room, SearchParams(k=3))
        assert len(scans()) == 1
        mine = make_memory(50, embedding=[0.0, 1.0], room_id=ROOMS[0])
        await one.create_memory(mine)
        statements.clear()
        hits = await one.search_memories([0.0, 1.0], room, SearchParams(k=1))
        assert [m.id for m, _ in hits] == [mine.id]  # this store's write is in the kept set
        assert scans() == []
        assert {thread for thread, _ in statements} == {threading.main_thread().name}
        assert len(statements) == 1  # the hits and the table's version, one statement

        theirs = make_memory(60, embedding=[-1.0, 1.0], room_id=ROOMS[0])
        await two.create_memory(theirs)
        statements.clear()
        hits = await one.search_memories([-1.0, 1.0], room, SearchParams(k=1))
        assert [m.id for m, _ in hits] == [theirs.id]
        assert len(scans()) == 1  # read again: the version moved without this store's write
        await two.delete_memory(theirs.id)
        hits = await one.search_memories([-1.0, 1.0], room, SearchParams(k=1))
        assert [m.id for m, _ in hits] != [theirs.id]
        assert len(scans()) == 2
    finally:
        await one.close()
        await two.close()


@pytest.mark.parametrize("via", SEARCH_CONNECTIONS)
async def test_a_filtered_flat_search_on_the_loop_thread_reads_one_snapshot(
    tmp_path: Path, via: str
) -> None:
    """With the worker thread busy, a filtered exact search over a kept set is still answered,
    on the loop's thread. Another process committing between its scoring and its rows read
    (the room's best row deleted, a row of another table taking its rowid) moves the version
    that statement reads, on either connection: the search is answered again as of after the
    write."""
    path = tmp_path / "snapshot.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    try:
        batch = [make_memory(i, embedding=[1.0, float(i)], room_id=ROOMS[0]) for i in range(5)]
        await one.create_memories_batch(batch)
        room = MemoryQuery(room_id=ROOMS[0])
        await one.search_memories([0.0, 1.0], room, SearchParams(k=2))  # the set is read
        assert one._executor is not None and one._reader is not None
        held = threading.Event()
        blocker = one._executor.submit(held.wait, 10)
        try:
            hits = await asyncio.wait_for(
                one.search_memories([0.0, 1.0], room, SearchParams(k=2)), timeout=5
            )
        finally:
            held.set()
            blocker.result()
        assert [m.id for m, _ in hits] == [batch[4].id, batch[3].id]

        intruder = make_memory(99, table_name="other", room_id=ROOMS[0])

        def other_process() -> None:
            assert two._delete_batch([batch[4].id]) == 1
            two._create_batch([intruder], None)

        rows_read = ("SELECT seq, id", "SELECT version")  # the statement reading a search's rows
        with searching_through(one, via, lambda conn: _WriteBefore(conn, rows_read, other_process)):
            hits = await one.search_memories([0.0, 1.0], room, SearchParams(k=2))
        assert await one.get_memory(intruder.id) is not None  # the write did happen
        assert [m.id for m, _ in hits] == [batch[3].id, batch[2].id]
    finally:
        await one.close()
        await two.close()


async def test_a_search_finding_nothing_above_the_threshold_checks_the_version(
    tmp_path: Path,
) -> None:
    """No hit to read the version with: it is read alone. A row written meanwhile by another
    process that does pass the threshold is found."""
    path = tmp_path / "empty.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    try:
        await one.create_memory(make_memory(0, embedding=[1.0, 0.0], room_id=ROOMS[0]))
        room = MemoryQuery(room_id=ROOMS[0])
        search = SearchParams(k=3, threshold=0.9)
        assert await one.search_memories([0.0, 1.0], room, search) == []
        assert await one.search_memories([0.0, 1.0], room, search) == []  # kept set, version
        late = make_memory(1, embedding=[0.0, 1.0], room_id=ROOMS[0])
        await two.create_memory(late)
        assert [m.id for m, _ in await one.search_memories([0.0, 1.0], room, search)] == [late.id]
    finally:
        await one.close()
        await two.close()


def test_label_sets_follow_writes_and_drop_what_missed_one() -> None:
    sets = LabelSets(limit=2)
    a, b, c = b"a" * 16, b"b" * 16, b"c" * 16
    sets.put("t", 1, (a, None, None), np.array([1, 2], dtype=np.int64))
    sets.put("t", 1, (None, None, c), np.array([2], dtype=np.int64))
    sets.apply("t", 1, 2, removed=[2], added=[(3, a, b, c), (4, b, b, b)])
    assert sets.get("t", 2, (a, None, None)).tolist() == [1, 3]  # type: ignore[union-attr]
    assert sets.get("t", 2, (None, None, c)).tolist() == [3]  # type: ignore[union-attr]
    assert sets.get("t", 1, (a, None, None)) is None  # another version
    sets.put("t", 2, (b, None, None), np.array([4], dtype=np.int64))  # the limit: LRU out
    assert sets.get("t", 2, (a, None, None)) is None
    sets.apply("t", 5, 6)  # a write it missed (another process's came between)
    assert not sets.has("t") and sets.get("t", 6, (None, None, c)) is None


async def test_hits_all_left_out_still_check_the_version(tmp_path: Path) -> None:
    """A search whose hits are all in `exclude` reads no row (they are left out in its
    statement): it reads the table's version instead, and after another process's write it
    searches again and finds that write's row."""
    path = tmp_path / "excluded.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    try:
        mine = [make_memory(i, embedding=[1.0, i / 10], room_id=ROOMS[0]) for i in range(3)]
        await one.create_memories_batch(mine)
        room = MemoryQuery(room_id=ROOMS[0])
        left_out = SearchParams(k=3, exclude=frozenset(m.id for m in mine))
        for _ in range(2):  # the first reads the room's rows, the second uses the kept set
            assert await one.search_memories([1.0, 0.0], room, left_out) == []
            assert await one.search_memories_any([1.0, 0.0], [room, room], left_out) == []
        theirs = make_memory(9, embedding=[0.0, 1.0], room_id=ROOMS[0])
        await two.create_memory(theirs)
        found = await one.search_memories([1.0, 0.0], room, left_out)
        assert [m.id for m, _ in found] == [theirs.id]
        found = await one.search_memories_any([1.0, 0.0], [room, room], left_out)
        assert [m.id for m, _ in found] == [theirs.id]
    finally:
        await one.close()
        await two.close()


class _WriteBefore:
    """A connection proxy that runs `write` once, right before the first statement starting
    with `prefix` (one of them, if a tuple): another process committing in the middle of a
    search."""

    def __init__(self, conn: sqlite3.Connection, prefix: str | tuple[str, ...], write: Any) -> None:
        self._conn, self._prefix, self._write = conn, prefix, write

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith(self._prefix) and self._write:
            write, self._write = self._write, None
            write()
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("via", SEARCH_CONNECTIONS)
@pytest.mark.parametrize(
    ("written", "before"),
    [
        ("newer", "SELECT seq, (SELECT version"),
        ("newer", "SELECT seq, id"),
        ("older and best", "SELECT seq, (SELECT version"),  # no hit to read: no second one
    ],
    ids=["newer-before the left-out rows", "newer-before the hits", "older-before the left-out"],
)
async def test_the_left_out_rows_and_the_hits_are_of_one_snapshot(
    tmp_path: Path, via: str, before: str, written: str
) -> None:
    """A search leaving out what a query reads (recall: the room's latest messages) reads
    those rows' seqs, then only the best hits beyond them. Another process committing before
    the first statement or between the two (a newer row: another row leaves the latest; an
    older row scoring best, which the index does not hold yet, where every hit it has is left
    out and no hit is read) moves the version the statements read: the answer is that of the
    file after the write, as the reference `search_each` gives it, never a mix of the two."""
    path = tmp_path / "leave-out.sqlite3"
    one, two = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    try:
        mine = [make_memory(i, embedding=[1.0, i / 10], room_id=ROOMS[0]) for i in range(6)]
        await one.create_memories_batch(mine)
        scopes = [MemoryQuery(room_id=ROOMS[0]), MemoryQuery(entity_id=mine[0].entity_id)]
        latest = MemoryQuery(room_id=ROOMS[0], table_name="messages", limit=2)
        if written == "newer":
            theirs = make_memory(9, embedding=[1.0, 0.0], room_id=ROOMS[0])
            params = SearchParams(k=2)
            expected = [[mine[3].id, mine[2].id], [mine[4].id, mine[3].id]]
        else:  # 4 and 5 alone pass the threshold, and both are left out
            theirs = make_memory(-5, embedding=[1.0, 1.0], room_id=ROOMS[0])
            params = SearchParams(k=2, threshold=0.9)
            expected = [[], [theirs.id]]
        found = await one.search_memories_any([1.0, 1.0], scopes, params, leave_out=latest)
        assert [m.id for m, _ in found] == expected[0]

        proxy = lambda conn: _WriteBefore(conn, before, lambda: two._create_batch([theirs], None))  # noqa: E731
        with searching_through(one, via, proxy):
            found = await one.search_memories_any([1.0, 1.0], scopes, params, leave_out=latest)
        assert await one.get_memory(theirs.id) is not None  # the write did happen, mid-search
        assert [m.id for m, _ in found] == expected[1]
        reference = await search_each(one, [1.0, 1.0], scopes, params, leave_out=latest)
        assert [m.id for m, _ in reference] == expected[1]
    finally:
        await one.close()
        await two.close()


async def test_a_search_on_the_loop_thread_holds_the_writes_connection_only_for_its_rows(
    tmp_path: Path,
) -> None:
    """A search on the loop's thread reads its rows on the writes' connection (the worker
    idle), but scores the index without holding it: the worker, given writes meanwhile,
    would wait for it only while the statements run."""
    db = await SqliteAdapter.open(tmp_path / "held.sqlite3")
    try:
        mine = [make_memory(i, embedding=[1.0, i / 10], room_id=ROOMS[0]) for i in range(6)]
        await db.create_memories_batch(mine)
        scopes = [MemoryQuery(room_id=ROOMS[0]), MemoryQuery(entity_id=mine[0].entity_id)]
        await db.search_memories_any([1.0, 1.0], scopes, SearchParams(k=2))  # sets kept
        index = db._indexes.latest("messages", "flat")
        assert index is not None and db._conn is not None
        held: list[bool] = []
        search = index.search

        def watched(*args: Any, **kwargs: Any) -> Any:
            held.append(db._conn_lock.locked())
            return search(*args, **kwargs)

        index.search = watched  # type: ignore[method-assign]
        statements: list[str] = []
        db._conn.set_trace_callback(statements.append)
        found = await db.search_memories_any([1.0, 1.0], scopes, SearchParams(k=2))
        db._conn.set_trace_callback(None)
        assert [m.id for m, _ in found] == [mine[5].id, mine[4].id]
        assert held == [False]  # the index searched without the connection
        assert any(sql.startswith("SELECT seq, id") for sql in statements)  # its rows read there
    finally:
        await db.close()


async def _one_room(db: SqliteAdapter, count: int) -> tuple[list[Memory], list[MemoryQuery]]:
    """`count` memories of one speaker in the first room written (the later ones nearer
    ``[1, 1]``), and recall's two scopes over them: the room, the speaker."""
    mine = [make_memory(i, embedding=[1.0, i / 10], room_id=ROOMS[0]) for i in range(count)]
    await db.create_memories_batch(mine)
    return mine, [MemoryQuery(room_id=ROOMS[0]), MemoryQuery(entity_id=mine[0].entity_id)]


async def test_a_search_on_the_loop_never_uses_the_connection_the_worker_holds(
    tmp_path: Path,
) -> None:
    """While the worker thread holds the writes' connection (a write in progress), a search
    answered on the caller's thread reads through the read-only connection: no statement of
    it runs on the worker's connection (which would race the worker and see its uncommitted
    writes)."""
    db = await SqliteAdapter.open(tmp_path / "held.sqlite3")
    try:
        mine, scopes = await _one_room(db, 6)
        await db.search_memories_any([1.0, 1.0], scopes, SearchParams(k=2))  # sets kept
        assert db._conn is not None and db._executor is not None
        on_conn: list[str] = []
        db._conn.set_trace_callback(lambda _sql: on_conn.append(threading.current_thread().name))
        taken, release = threading.Event(), threading.Event()

        def hold() -> None:
            with db._conn_lock:  # the worker in the middle of a write
                taken.set()
                release.wait(10)

        blocker = db._executor.submit(hold)
        assert taken.wait(10)
        try:
            vector = np.array([1.0, 1.0])
            found = db._search_sets_here(vector, scopes, SearchParams(k=2), None)
        finally:
            release.set()
            blocker.result(10)
        db._conn.set_trace_callback(None)
        assert found is not None and [m.id for m, _ in found] == [mine[5].id, mine[4].id]
        assert threading.current_thread().name not in on_conn, on_conn
    finally:
        await db.close()


@pytest.mark.parametrize("excluded", [1, 2, 3])
async def test_leaving_out_the_conversation_and_excluding_ids_still_finds_k(
    tmp_path: Path, excluded: int
) -> None:
    """The recent conversation left out (read first, then the best hits beyond it) and the
    best remaining hits excluded by id: still k hits, those searching each filter and
    merging gives."""
    room = ROOMS[0]
    db = await SqliteAdapter.open(tmp_path / "left.sqlite3")
    try:
        mine, scopes = await _one_room(db, 10)
        latest = MemoryQuery(room_id=room, table_name="messages", limit=2)
        # the best hits beyond the 2 latest (9, 8) are 7, 6, 5, ...: the best ones excluded
        params = SearchParams(k=2, exclude=frozenset(mine[7 - j].id for j in range(excluded)))
        await db.search_memories_any([1.0, 1.0], scopes, params, leave_out=latest)  # sets kept
        found = await db.search_memories_any([1.0, 1.0], scopes, params, leave_out=latest)
        expected = await search_each(db, [1.0, 1.0], scopes, params, leave_out=latest)
        assert [m.id for m, _ in found] == [m.id for m, _ in expected]
        assert len(found) == 2
    finally:
        await db.close()


async def test_a_new_speakers_first_searches_at_once_keep_its_set_and_search_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many rooms' first messages of a new speaker, searched in one loop turn (recall's room
    and speaker beyond the conversation): the first reads the speaker's label set on the
    caller's thread and keeps it, so every search is one scoring of both sets, not one search
    a scope (`search_each`), and each answers what `search_each` answers."""
    db = await SqliteAdapter.open(tmp_path / "first.sqlite3")
    rooms = [UUID(int=0x100 + r) for r in range(8)]
    speaker = UUID(int=0xABC)
    try:
        older = [
            make_memory(r * 10 + i, embedding=[1.0, i / 10], room_id=room)
            for r, room in enumerate(rooms)
            for i in range(4)
        ]
        await db.create_memories_batch(older)
        for room in rooms:  # the rooms' sets kept, the new speaker's not
            await db.search_memories_any([1.0, 1.0], [MemoryQuery(room_id=room)] * 2)
        first = [
            make_memory(100 + r, embedding=[1.0, 0.5], room_id=room, entity_id=speaker)
            for r, room in enumerate(rooms)
        ]
        await db.create_memories_batch(first)
        params = SearchParams(k=3, exclude=frozenset())
        scopes = {
            room: [MemoryQuery(room_id=room), MemoryQuery(entity_id=speaker)] for room in rooms
        }
        latest = {room: MemoryQuery(room_id=room, table_name="messages", limit=2) for room in rooms}
        each: list[int] = []

        async def counted(*args: Any, **kwargs: Any) -> Any:
            each.append(1)
            return await search_each(*args, **kwargs)

        monkeypatch.setattr("builtin_plugins.sqlite.search.search_each", counted)
        found = await asyncio.gather(
            *(
                db.search_memories_any([1.0, 1.0], scopes[room], params, leave_out=latest[room])
                for room in rooms
            )
        )
        assert each == []  # no search went one scope at a time
        version = db._indexes.latest("messages", "flat")
        assert version is not None
        assert db._labels.get("messages", version.version, (None, speaker.bytes, None)) is not None
        for room, hits in zip(rooms, found, strict=True):
            expected = await search_each(
                db, [1.0, 1.0], scopes[room], params, leave_out=latest[room]
            )
            assert [m.id for m, _ in hits] == [m.id for m, _ in expected]
            assert len(hits) == 3
    finally:
        await db.close()
