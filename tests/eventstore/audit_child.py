"""A process recording audit events until it is killed (used by test_audit_kill.py).

Usage: ``python -m tests.eventstore.audit_child PATH FLUSH_INTERVAL``. It records one event
every millisecond or so through the audit plugin's own recorder and store (the settings'
``flush_interval``), printing ``n t`` (its number, the wall-clock time it was recorded) once
`record` has returned; on SIGTERM it stops cleanly (the recorder's `aclose`)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from builtin_plugins.audit import AuditRecorder, AuditSettings, open_event_store


async def run(path: Path, flush_interval: float) -> None:
    settings = AuditSettings(path=path, flush_interval=flush_interval, events=("*",))
    store = await open_event_store(settings, None, path.parent)
    recorder = AuditRecorder(store, settings)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    n = 0
    try:
        while not stop.is_set():
            at = time.time()
            recorder.record("test:tick", {"n": n, "t": at, "text": "x" * 200})
            print(n, at, flush=True)
            n += 1
            await asyncio.sleep(0.001)
    finally:
        await recorder.aclose()
        await store.close()
    print("stopped", n, flush=True)


if __name__ == "__main__":
    asyncio.run(run(Path(sys.argv[1]), float(sys.argv[2])))
