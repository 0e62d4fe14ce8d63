"""The audit trail's flush window, timed against a real SQLite file read by another connection:
an event is stored no sooner than the window after the first event of its batch (the trail
batches) and no later than the window plus one batch's write (what kill -9 can lose, with
tests/eventstore/test_audit_kill.py; docs/eventstore.md). A window long next to this machine's
scheduling delays makes both bounds sharp: a recorder that kept events twice as long, or
wrote each at once, fails."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from builtin_plugins.audit import AuditRecorder, AuditSettings
from host.eventstore import SqliteEventStore

WINDOW = 2.0
"""The recorder's ``flush_interval`` here (seconds)."""
WRITE = 1.0
"""Allowance for one batch's conversion and write on a loaded machine (the default window is
20 ms; a batch of a few events takes ~1 ms)."""


def _stored(path: Path) -> int:
    """Events in the log, read by a connection of its own (what survives the process)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM event_log").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet: nothing stored
        return 0
    finally:
        conn.close()


async def _until_stored(path: Path, count: int, limit: float) -> None:
    """Return once `count` events are stored (polled every 10 ms), or after `limit` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await asyncio.to_thread(_stored, path) >= count:
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_an_event_is_stored_within_the_window_and_not_before(
    tmp_path: Path, writer: str
) -> None:
    path = tmp_path / "audit.sqlite3"
    store = await SqliteEventStore.open(path)
    settings = AuditSettings.model_validate(
        {"flush_interval": WINDOW, "events": ["*"], "writer": writer}
    )
    recorder = AuditRecorder(store, settings)
    try:
        for batch in range(2):  # the first starts the writer (and its process), the second not
            began = time.monotonic()
            recorder.record("tick", {"agent_id": "a", "i": batch})
            await _until_stored(path, batch + 1, WINDOW + WRITE + 5)
            waited = time.monotonic() - began  # from the record to the read that saw it
            assert WINDOW - 0.05 <= waited <= WINDOW + WRITE, (
                f"batch {batch}: stored {waited:.3f} s after it was recorded"
                f" (window {WINDOW} s, allowance {WRITE} s)"
            )
    finally:
        await recorder.aclose()
        await store.close()
    assert _stored(path) == 2
