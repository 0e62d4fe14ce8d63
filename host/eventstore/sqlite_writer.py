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
  ``("refused", message)`` (the batch can never be stored: a duplicate id),
  ``("unavailable", message)`` (the database failed: busy, disk full; may work later).

On end of input (the parent stopped, or died: kill -9) it has already committed every batch it
read, so it closes the database and exits. SIGINT (a Ctrl-C to the terminal's process group)
is ignored: the parent's clean stop still needs this process to write its last batches.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sqlite3
import struct
import sys
from typing import Any

_HEAD = struct.Struct(">I")

INSERT = (
    "INSERT INTO event_log (id, aggregate_id, version, event_type, schema_version, timestamp,"
    " data, causation_id, correlation_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def read_frame(fd: int) -> Any:
    """The next frame's object from `fd`; None at end of input."""
    head = read_exactly(fd, _HEAD.size)
    if head is None:
        return None
    body = read_exactly(fd, _HEAD.unpack(head)[0])
    if body is None:
        return None
    return pickle.loads(body)


def read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd` (blocking, the GIL let go); None at end of input."""
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def frame(obj: object) -> bytes:
    """`obj` as one frame."""
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(body)) + body


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
        aggregates = list(dict.fromkeys(row[1] for row in rows))
        before = dict.fromkeys(aggregates, 0)
        for aggregate, version in conn.execute(
            "SELECT aggregate_id, version FROM event_streams WHERE aggregate_id IN"
            f" ({', '.join('?' * len(aggregates))})",
            aggregates,
        ):
            before[aggregate] = version
        if any(before.values()):
            rows = [(r[0], r[1], before[r[1]] + r[2], *r[3:]) for r in rows]
        conn.executemany(INSERT, rows)
        last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        conn.executemany(
            "INSERT INTO event_streams (aggregate_id, version) VALUES (?, ?)"
            " ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version",
            {row[1]: row[2] for row in rows}.items(),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return last


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


def serve(inp: int, out: int) -> None:
    """Answer frames from `inp` on `out` until end of input."""
    options = read_frame(inp)
    if options is None:
        return
    conn: sqlite3.Connection | None = None
    try:
        while (batch := read_frame(inp)) is not None:
            resend, rows = batch
            try:
                if conn is None:  # opened at the first batch (again if that failed)
                    conn = connect(options)
                reply: tuple[str, object] = ("ok", write_rows(conn, rows, resend))
            except sqlite3.IntegrityError as exc:
                reply = ("refused", str(exc))
            except sqlite3.Error as exc:
                reply = ("unavailable", f"{type(exc).__name__}: {exc}")
            write_all(out, frame(reply))
    finally:
        if conn is not None:
            conn.close()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    with contextlib.suppress(BrokenPipeError):  # the parent is gone; what it read is stored
        serve(inp, out)


if __name__ == "__main__":
    main()
