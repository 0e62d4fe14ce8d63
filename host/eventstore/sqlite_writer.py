"""The SQLite event log's writer process: appends the batches its parent sends, one transaction
each, and answers each with its last position.

Run as a script (``python -I -S sqlite_writer.py``, by `writer_process.WriterProcess`): it
imports only the standard library (no package ``__init__``, no pydantic), so it starts in a few
milliseconds. Everything it receives is already masked and encoded by the parent: rows as
`sqlite._rows` builds them (ids assigned by the parent, so a resent batch is recognised).

Protocol, on stdin and stdout, each frame a 4-byte big-endian length and a pickle:
- parent -> child, first: ``{"path", "busy_timeout", "synchronous", "autocheckpoint"}``;
  then ``(resend, rows)`` per batch (the log is opened at the first);
- child -> parent, per batch: ``(status, detail)``: ``("ok", last position)``,
  ``("refused", message)`` (the batch can never be stored: a duplicate id, a number SQLite
  cannot hold),
  ``("unavailable", message)`` (the database failed: busy, disk full; may work later).

On end of input (the parent stopped, or died: kill -9) it has already committed every batch it
read, so it closes the database and exits; likewise when its parent has died while a process
the parent forked (a plugin's ``multiprocessing`` worker) keeps the pipe open: between batches
it checks every `PARENT_CHECK` seconds that its parent is still the one that started it.
SIGINT, SIGTERM and SIGHUP are ignored: sent to the whole process group (Ctrl-C in a terminal,
``systemctl stop`` and its ``KillMode=control-group``, a closed terminal), they are the
parent's to act on, and its clean stop still needs this process to write the last batches.
Its life is bounded by its input: the parent closes the pipe (or dies), this process exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sqlite3
import struct
import sys
from typing import Any

HEAD = struct.Struct(">I")
"""A frame's head: the length of the pickle that follows."""

INSERT = (
    "INSERT INTO event_log (id, aggregate_id, version, event_type, schema_version, timestamp,"
    " data, causation_id, correlation_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


PARENT_CHECK = 1.0
"""Seconds between two checks, while no input comes, that the parent is alive."""


def read_frame(fd: int, parent: int) -> Any:
    """The next frame's object from `fd`; None at end of input, or once process `parent` is
    no longer this one's."""
    head = read_exactly(fd, HEAD.size, parent)
    if head is None:
        return None
    body = read_exactly(fd, HEAD.unpack(head)[0], parent)
    if body is None:
        return None
    return pickle.loads(body)


def read_exactly(fd: int, size: int, parent: int) -> bytes | None:
    """`size` bytes from `fd` (blocking); None at end of input or once `parent` died."""
    chunks = []
    while size:
        while not select.select([fd], [], [], PARENT_CHECK)[0]:
            if os.getppid() != parent:  # died; a process it forked holds the pipe open
                return None
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def frame(obj: object) -> bytes:
    """`obj` as one frame."""
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEAD.pack(len(body)) + body


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], resend: bool) -> int:
    """Insert `rows` (versions relative to each aggregate's current one) in one transaction;
    the last position. A resent batch whose last id is stored was committed already (a batch
    is one transaction): it is not written again."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if resend:
            found = conn.execute(
                "SELECT position FROM event_log WHERE id = ?", (rows[-1][0],)
            ).fetchone()
            if found is not None:
                conn.execute("COMMIT")
                return int(found[0])
        aggregates = aggregates_of(rows)
        before = dict.fromkeys(aggregates, 0) | dict(stored_versions(conn, aggregates))
        last = insert_rows(conn, INSERT, at_versions(rows, before))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return last


def aggregates_of(rows: list[tuple[Any, ...]]) -> list[str]:
    """The aggregates of a batch's rows, in their first row's order."""
    return list(dict.fromkeys(row[1] for row in rows))


def stored_versions(conn: sqlite3.Connection, aggregates: list[str]) -> list[tuple[Any, Any]]:
    """(aggregate, current version) of those of `aggregates` with events (in the append's
    transaction: the write lock held)."""
    return conn.execute(
        "SELECT aggregate_id, version FROM event_streams WHERE aggregate_id IN"
        f" ({', '.join('?' * len(aggregates))})",
        aggregates,
    ).fetchall()


def at_versions(rows: list[tuple[Any, ...]], before: dict[str, int]) -> list[tuple[Any, ...]]:
    """`rows` (versions relative to their aggregate's) at their aggregates' versions `before`."""
    if not any(before.values()):
        return rows
    return [(r[0], r[1], before[r[1]] + r[2], *r[3:]) for r in rows]


def insert_rows(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    """Insert `rows` with `sql` and set each aggregate's version to its last row's (in the
    append's transaction); the last row's position. The write lock is held and positions are
    AUTOINCREMENT: a batch's positions are the consecutive ones ending there."""
    conn.executemany(sql, rows)
    last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
    conn.executemany(
        "INSERT INTO event_streams (aggregate_id, version) VALUES (?, ?)"
        " ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version",
        {row[1]: row[2] for row in rows}.items(),
    )
    return last


def rollback(conn: sqlite3.Connection) -> None:
    """End the failed transaction on `conn`, if SQLite has not already: after a full disk
    (SQLITE_FULL), an I/O error or a lock it may have rolled it back itself, and a ROLLBACK
    then fails with "no transaction is active", which would stand in for the error that
    counts."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def connect(options: dict[str, Any]) -> sqlite3.Connection:
    conn = sqlite3.connect(
        options["path"],
        timeout=options["busy_timeout"],
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA synchronous={options['synchronous']}")
    conn.execute(f"PRAGMA wal_autocheckpoint={int(options['autocheckpoint'])}")
    return conn


def serve(inp: int, out: int, parent: int) -> None:
    """Answer frames from `inp` on `out` until end of input (or `parent`'s death)."""
    options = read_frame(inp, parent)
    if options is None:
        return
    conn: sqlite3.Connection | None = None
    try:
        while (batch := read_frame(inp, parent)) is not None:
            resend, rows = batch
            try:
                if conn is None:  # opened at the first batch (again if that failed)
                    conn = connect(options)
                reply: tuple[str, object] = ("ok", write_rows(conn, rows, resend))
            except sqlite3.IntegrityError as exc:
                reply = ("refused", str(exc))
            except sqlite3.Error as exc:
                reply = ("unavailable", f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a value SQLite cannot bind (a number past 64 bits)
                reply = ("refused", f"{type(exc).__name__}: {exc}")
            write_all(out, frame(reply))
    finally:
        if conn is not None:
            conn.close()


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    parent = os.getppid()
    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    with contextlib.suppress(BrokenPipeError):  # the parent is gone; what it read is stored
        serve(inp, out, parent)


if __name__ == "__main__":
    main()
