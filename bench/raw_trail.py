"""The raw work the audit trail stands for, done with the raw libraries (issue 20, target 7).

What a trail of the pipeline's events cannot do without: every event the trail records is
noted on the loop (a deque append; the first one of a window wakes a thread), and a thread of
its own, once per flush window (20 ms, the trail's default), serializes each payload with
pydantic-core (embeddings left out, as the trail does: otherwise 384 floats a memory) and
appends the rows with plain ``sqlite3`` (``executemany``, one transaction) into the trail's
own schema (the same table and indexes, WAL, ``synchronous=NORMAL``, the same auto-checkpoint
threshold). Left out, as the trail's own work: masking secrets, the agent, message and room of
each event, the metadata, the aggregates' versions, retries (its ids are time-ordered, as
the trail's: random ones cost each row's index insert more).

With ``process=True`` the thread hands each window's rows to a writer process instead
(pickled, on a pipe, waiting for its answer that they are committed, the GIL let go), which
appends them: the SQLite work leaves the host's process; the serializing cannot (no secret
may leave the host unmasked).

`bench/pipeline.py` runs both beside the same pipeline as the trail's paired comparison: what
they cost the pipeline is the floor of target 7 on this machine.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from pydantic_core import to_json

from builtin_plugins.audit.recorder import EMBEDDING_KEYS
from builtin_plugins.audit.settings import AuditSettings
from host.eventstore.common import new_ids
from host.eventstore.recording import _exclusions
from host.eventstore.sqlite import SCHEMA, WRITER_CHECKPOINT_PAGES
from host.storekit import is_model

INSERT = (
    "INSERT INTO event_log (id, aggregate_id, version, event_type, schema_version, timestamp,"
    " data, causation_id, correlation_id, metadata) VALUES (?, ?, ?, ?, 1, ?, ?, NULL, NULL,"
    " '{}')"
)

CHILD = """
import pickle, sqlite3, struct, sys
path, insert = sys.argv[1:]
conn = sqlite3.connect(path, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=NORMAL")
read, write = sys.stdin.buffer.read, sys.stdout.buffer
while head := read(4):
    rows = pickle.loads(read(struct.unpack("<I", head)[0]))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert, rows)
    conn.execute("COMMIT")
    write.write(b"k")
    write.flush()
"""
"""The writer process of ``process=True``: appends each pickled batch, answers once committed."""


class RawTrail:
    """Bus events into a SQLite file by the raw libraries, on a thread, a window at a time
    (`process`: appended by a writer process)."""

    def __init__(
        self, path: Path, window: float = AuditSettings().flush_interval, process: bool = False
    ) -> None:
        self.path = path
        self.name = "raw-trail-process" if process else "raw-trail"
        """The thread's name (`bench/pipeline.py` reads its CPU by it)."""
        self.child = (
            subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", CHILD, str(path), INSERT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            if process
            else None
        )
        self.window = window
        self.events = set(AuditSettings().events)
        self._pending: deque[tuple[str, object, int]] = deque()
        self._work = threading.Event()
        self._hurry = threading.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._queued = 0
        self._done = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._version = 0
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        self.conn.executescript(SCHEMA)

    def record(self, event: Any, payload: object) -> None:
        """The bus handler (``on_any``): note the event if the trail records its kind."""
        if event.name not in self.events:
            return
        pending = self._pending
        pending.append((event.name, payload, time.time_ns() // 1000))
        self._queued += 1
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._writer, name=self.name, daemon=True)
            self._thread.start()
        if len(pending) == 1:
            self._work.set()

    def child_cpu(self) -> float:
        """CPU seconds the writer process has used so far (0 without one)."""
        return 0.0 if self.child is None else process_cpu(self.child.pid)

    async def flush(self) -> None:
        """Return once everything noted so far is committed."""
        if self._done >= self._queued:
            return
        done = asyncio.get_running_loop().create_future()
        self._waiters.append((self._queued, done))
        self._hurry.set()
        self._work.set()
        await done

    def close(self) -> None:
        self._closing = True
        self._work.set()
        self._hurry.set()
        if self._thread is not None:
            self._thread.join()
        self.conn.close()
        if self.child is not None:
            assert self.child.stdin is not None
            self.child.stdin.close()
            self.child.wait()

    def _writer(self) -> None:
        pending = self._pending
        while not self._closing or pending:
            self._work.wait()
            self._work.clear()
            if not pending:
                continue
            if not self._waiters and not self._closing:
                self._hurry.wait(self.window)
            self._hurry.clear()
            batch = [pending.popleft() for _ in range(len(pending))]
            self._append(batch)
            self._done += len(batch)
            if self._waiters and self._loop is not None:
                self._loop.call_soon_threadsafe(self._release)
            if pending:
                self._work.set()

    def _release(self) -> None:
        waiting = []
        for target, done in self._waiters:
            if target <= self._done:
                _resolve(done)
            else:
                waiting.append((target, done))
        self._waiters = waiting

    def _append(self, batch: list[tuple[str, object, int]]) -> None:
        rows = []
        version = self._version
        ids = new_ids(len(batch))  # time-ordered, as the trail's: appended at the index's end
        for (kind, payload, micros), event_id in zip(batch, ids, strict=True):
            exclude = _exclusions(payload, EMBEDDING_KEYS) if is_model(payload) else None
            version += 1
            data = to_json(payload, exclude=exclude or None).decode()
            rows.append((event_id, "agent", version, kind, micros, data))
        self._version = version
        if self.child is not None:
            assert self.child.stdin is not None and self.child.stdout is not None
            frame = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
            self.child.stdin.write(struct.pack("<I", len(frame)) + frame)
            self.child.stdin.flush()
            self.child.stdout.read(1)
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")


def process_cpu(pid: int | None) -> float:
    """CPU seconds process `pid` has used so far (Linux's /proc; 0 for None or elsewhere)."""
    stat = Path(f"/proc/{pid}/stat")
    if pid is None or not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
