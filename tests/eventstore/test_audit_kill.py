"""The audit trail's loss bound, with a real process: killed with SIGKILL it loses at most
the events of its last flush window; stopped cleanly (SIGTERM) it loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from builtin_plugins.audit import AuditSettings
from host.eventstore import SqliteEventStore

ROOT = Path(__file__).resolve().parents[2]
FLUSH_INTERVAL = AuditSettings().flush_interval
"""The child's ``flush_interval``, the default one: events are stored at most this long after
being recorded, plus one batch's conversion and write."""
SCHEDULING = 0.5
"""Allowance for this machine's load (the child may wait for a CPU): a recorder that kept
events longer than FLUSH_INTERVAL + SCHEDULING (or until its clean stop) fails the test."""


def start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.eventstore.audit_child", str(path), str(FLUSH_INTERVAL)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(process: subprocess.Popen[str], seconds: float) -> dict[int, float]:
    """The events the child reported recorded during about `seconds` (number -> time)."""
    assert process.stdout is not None
    recorded: dict[int, float] = {}
    deadline = time.time() + seconds
    while time.time() < deadline or len(recorded) < 200:
        line = process.stdout.readline()
        assert line, f"the child exited early: {process.communicate()[1]}"
        n, at = line.split()
        recorded[int(n)] = float(at)
    return recorded


async def stored(path: Path) -> list[int]:
    store = await SqliteEventStore.open(path)
    try:
        events = await store.read_all(limit=1_000_000)
    finally:
        await store.close()
    return [int(event.data["n"]) for event in events]  # type: ignore[call-overload]


async def test_kill_9_loses_at_most_the_last_flush_window(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    process = start(path)
    try:
        recorded = await asyncio.to_thread(read_until, process, 1.5)
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
        # its writer process (it holds the same stderr) writes what it read, then exits
        await asyncio.to_thread(process.communicate, None, 30)
    finally:
        if process.poll() is None:
            process.kill()
    numbers = await stored(path)
    assert numbers == list(range(len(numbers))), "stored events are a prefix, in order"
    lost = [n for n in recorded if n >= len(numbers)]
    assert len(numbers) > 0 and len(lost) < len(recorded)
    oldest_lost = min((recorded[n] for n in lost), default=killed_at)
    # everything recorded before the last flush window (and the allowance) was stored
    assert oldest_lost >= killed_at - FLUSH_INTERVAL - SCHEDULING, (
        f"lost events recorded {killed_at - oldest_lost:.3f} s before the kill"
        f" ({len(lost)} of {len(recorded)})"
    )


async def test_a_clean_stop_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    process = start(path)
    try:
        await asyncio.to_thread(read_until, process, 0.5)
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, None, 60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "stopped"
    assert await stored(path) == list(range(int(last[1])))
