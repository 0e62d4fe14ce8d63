"""kill -9 on the SQLite store's lone-write path: one room's writes, one awaited at a time,
each committed on the caller's thread while the worker is idle (`SqliteCore._submit`'s lone
branch). A child process (tests/storage/sqlite_lone_writer_child.py) writes until it is killed
at a random moment, several times over one file; after each kill the file must hold every
acknowledged write, nothing partial (a row without its table's version bump or the reverse,
part of a batch, a replace's deletes without its inserts), no write after a missing one, and
open again with its indexes rebuilt from it. The crash test
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
    acknowledged: list[list[UUID]] = field(repr=False)
    """Each acknowledged write's ids, in order."""
    last: int
    """The number of the last write acknowledged."""
    lone: int
    here: int
    worker: int

    @property
    def writes(self) -> int:
        return len(self.acknowledged)


def _write_until_killed(path: Path, mode: str, kill: int, rng: random.Random) -> Round:
    """Start the writer, kill it (SIGKILL) a random time after its first acknowledged write;
    what it acknowledged (its complete lines: a line cut by the kill is not an
    acknowledgement)."""
    out = path.with_name(f"acks-{mode}-{kill}.txt")
    with out.open("wb") as sink:
        child = "tests.storage.sqlite_lone_writer_child"
        process = subprocess.Popen(
            [sys.executable, "-m", child, str(path), mode],
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
    acknowledged = [[UUID(i) for i in line.split()[0].split(",")] for line in lines]
    last, lone, here, on_worker = (int(x) for x in lines[-1].split()[1:])
    return Round(acknowledged, last, lone, here, on_worker)


def _check_file(path: Path, mode: str) -> None:
    """The raw file after a kill: intact, and each write's version bump there with its rows (a
    write is one transaction: rows and bump, or neither). A write's rows carry its number, the
    table's version before it: the version is one past the last write's, and (but for
    ``replace``, which leaves one batch) every earlier write is there too."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        dimension, version = conn.execute(
            "SELECT dimension, version FROM memory_tables WHERE table_name = 'messages'"
        ).fetchone()
        writes = sorted(
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT json_extract(metadata, '$.write') FROM memories"
            )
        )
    finally:
        conn.close()
    assert dimension == 3
    assert writes, f"no write stored, the version {version} (a replace's deletes alone?)"
    assert version == writes[-1] + 1, f"the last write is {writes[-1]}, the version {version}"
    assert writes == ([writes[-1]] if mode == "replace" else list(range(version)))


async def _check_store(path: Path, mode: str, acknowledged: list[list[UUID]], last: int) -> None:
    """The file opened by the store: every acknowledged write there (in mode ``replace``, the
    last one acknowledged, or the one after it, committed as it was killed), each row as
    written, batches whole, no gap (the writes are made one after another: a later one stored
    without an earlier one is out of order), and searches over indexes rebuilt from the file
    find every row with a vector."""
    db = await SqliteAdapter.open(path)  # recovers the WAL
    try:
        rows = await db.get_memories(MemoryQuery(table_name="messages", order="asc"))
        stored = {m.id: m for m in rows}
        for m in rows:
            n, batch, size, write = (m.metadata[k] for k in ("n", "batch", "size", "write"))
            want = expected(n, batch, size, write)
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
        numbers = sorted(int(m.metadata["n"]) for m in rows)
        if mode == "replace":
            (write,) = {m.metadata["write"] for m in rows}
            assert write in (last, last + 1), f"write {write} stored, {last} acknowledged"
            if write == last:
                assert set(acknowledged[-1]) == stored.keys()
        else:
            lost = {i for ids in acknowledged for i in ids} - stored.keys()
            assert not lost, f"{len(lost)} acknowledged writes lost"
            assert numbers == list(range(len(rows))), "a write stored after one missing"
        with_vectors = {m.id for m in rows if m.embedding is not None}
        everything = SearchParams(k=len(rows) + 1, with_embeddings=False)
        probe = next((v for n in numbers if (v := vector(n)) is not None), [1.0, 0.0, 0.5])
        for query in (
            MemoryQuery(table_name="messages"),
            MemoryQuery(agent_id=AGENT, room_id=ROOM, table_name="messages"),
        ):
            found = await db.search_memories(probe, query, everything)
            assert {m.id for m, _ in found} == with_vectors
        await db.build_index("hnsw")
        top = await db.search_memories(probe, params=SearchParams(k=1, index_type="hnsw"))
        if with_vectors:
            assert top[0][1] == pytest.approx(1.0, abs=1e-5)  # a stored row's own vector
    finally:
        await db.close()


@pytest.mark.parametrize("mode", ["one", "batch", "replace"])
async def test_kill_9_on_the_lone_write_path_loses_nothing_acknowledged_and_leaves_nothing_partial(
    tmp_path: Path, mode: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    path = tmp_path / "lone.sqlite3"
    acknowledged: list[list[UUID]] = []
    writes = lone = 0
    for kill in range(ROUNDS):
        done = _write_until_killed(path, mode, kill, rng)
        where = f"seed {seed}, kill {kill + 1}: {done}"
        assert done.lone + done.here + done.worker == done.writes, where  # a commit each
        writes, lone = writes + done.writes, lone + done.lone
        acknowledged += done.acknowledged
        _check_file(path, mode)
        await _check_store(path, mode, acknowledged, done.last)
    # the lone path carried the writes (not groups, not the worker): its kills landed there
    assert lone * 2 > writes, f"seed {seed}: {lone} of {writes} writes took the lone path"
