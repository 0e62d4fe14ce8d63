"""kill -9 on the SQLite store's lone-write path: one room's writes, one awaited at a time,
each committed on the caller's thread while the worker is idle (`SqliteCore._submit`'s lone
branch). A child process (tests/storage/sqlite_lone_writer_child.py) writes until it is killed
at a random moment, several times over one file; after each kill the file must hold every
acknowledged write, nothing partial (a row without its table's version bump, part of a batch),
no write after a missing one, and open again with its indexes rebuilt from it. The crash test
of test_storage_sqlite_writes.py drives many writers at once, where nearly every write commits
in a group: this one checks that the lone path was the one taken."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import pytest

from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import MemoryQuery
from contracts.storage import SearchParams

from .sqlite_lone_writer_child import AGENT, ROOM, expected, vector

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 4
"""Kills per mode, each on the file the previous ones left."""


@dataclass
class Round:
    acknowledged: list[UUID] = field(repr=False)
    writes: int
    lone: int
    here: int
    worker: int


def _write_until_killed(path: Path, mode: str, first: int, rng: random.Random) -> Round:
    """Start the writer at memory `first`, kill it (SIGKILL) a random time after its first
    acknowledged write; what it acknowledged (its complete lines: a line cut by the kill is
    not an acknowledgement)."""
    out = path.with_name(f"acks-{mode}-{first}.txt")
    with out.open("wb") as sink:
        child = "tests.storage.sqlite_lone_writer_child"
        process = subprocess.Popen(
            [sys.executable, "-m", child, str(path), mode, str(first)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=sink,  # a file: the writer never waits for a reader
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while out.stat().st_size == 0:
                assert process.poll() is None, f"the writer exited: {process.communicate()[1]!r}"
                assert time.monotonic() < deadline, "the writer acknowledged nothing in 30 s"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.02, 0.35))
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == -signal.SIGKILL, process.communicate()[1]
    *lines, _cut = out.read_text().split("\n")
    assert lines, "no complete acknowledgement"
    acknowledged = [UUID(i) for line in lines for i in line.split()[0].split(",")]
    lone, here, on_worker = (int(x) for x in lines[-1].split()[1:])
    return Round(acknowledged, len(lines), lone, here, on_worker)


def _check_file(path: Path, mode: str) -> tuple[int, int]:
    """The raw file after a kill: intact, and each write's version bump there with its rows
    (a write is one transaction: rows and bump, or neither). Its rows and the table's version."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        dimension, version = conn.execute(
            "SELECT dimension, version FROM memory_tables WHERE table_name = 'messages'"
        ).fetchone()
        rows = conn.execute("SELECT COUNT(*) FROM memories").fetchone()[0]
        batches = conn.execute(
            "SELECT COUNT(DISTINCT json_extract(metadata, '$.batch')) FROM memories"
        ).fetchone()[0]
    finally:
        conn.close()
    assert dimension == 3
    writes = rows if mode == "one" else batches
    assert version == writes, f"{writes} writes stored, the table's version says {version}"
    return rows, version


async def _check_store(path: Path, acknowledged: set[UUID]) -> int:
    """The file opened by the store: every acknowledged write there, each row as written,
    batches whole, no gap (the writes are made one after another: a later one stored without
    an earlier one is out of order), and searches over indexes rebuilt from the file find
    every row with a vector. The number of memories stored."""
    db = await SqliteAdapter.open(path)  # recovers the WAL
    try:
        rows = await db.get_memories(MemoryQuery(table_name="messages", order="asc"))
        stored = {m.id: m for m in rows}
        lost = acknowledged - stored.keys()
        assert not lost, f"{len(lost)} acknowledged writes lost"
        numbers = sorted(int(m.metadata["n"]) for m in rows)
        assert numbers == list(range(len(rows))), "a write stored after one missing"
        for m in rows:
            n, batch, size = m.metadata["n"], m.metadata["batch"], m.metadata["size"]
            want = expected(n, batch, size)
            assert (m.id, m.agent_id, m.room_id, m.content, m.metadata) == (
                want.id,
                want.agent_id,
                want.room_id,
                want.content,
                want.metadata,
            )
            got = None if m.embedding is None else m.embedding.tolist()
            assert got == vector(n)
        sizes = Counter(m.metadata["batch"] for m in rows)
        assert all(sizes[m.metadata["batch"]] == m.metadata["size"] for m in rows), "half a batch"
        with_vectors = {m.id for m in rows if m.embedding is not None}
        everything = SearchParams(k=len(rows) + 1, with_embeddings=False)
        probe = next(v for n in reversed(numbers) if (v := vector(n)) is not None)
        for query in (
            MemoryQuery(table_name="messages"),
            MemoryQuery(agent_id=AGENT, room_id=ROOM, table_name="messages"),
        ):
            found = await db.search_memories(probe, query, everything)
            assert {m.id for m, _ in found} == with_vectors
        await db.build_index("hnsw")
        top = await db.search_memories(probe, params=SearchParams(k=1, index_type="hnsw"))
        assert top and top[0][1] == pytest.approx(1.0, abs=1e-5)  # a stored row's own vector
    finally:
        await db.close()
    return len(rows)


@pytest.mark.parametrize("mode", ["one", "batch"])
async def test_kill_9_on_the_lone_write_path_loses_nothing_acknowledged_and_leaves_nothing_partial(
    tmp_path: Path, mode: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "lone.sqlite3"
    acknowledged: set[UUID] = set()
    stored = writes = lone = 0
    for kill in range(ROUNDS):
        done = _write_until_killed(path, mode, stored, rng)
        where = f"seed {seed}, kill {kill + 1}: {done}"
        assert done.lone + done.here + done.worker == done.writes, where  # a commit each
        writes, lone = writes + done.writes, lone + done.lone
        acknowledged.update(done.acknowledged)
        _check_file(path, mode)
        stored = await _check_store(path, acknowledged)
        assert stored >= len(acknowledged), where
    # the lone path carried the writes (not groups, not the worker): its kills landed there
    assert lone * 2 > writes, f"seed {seed}: {lone} of {writes} writes took the lone path"
