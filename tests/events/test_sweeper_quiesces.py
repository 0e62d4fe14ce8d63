"""Sweepers stop when nothing is under a deadline, also with a second loop in another thread
(an app's own loop beside the host's): a sweeper that stops asks the other loops with a pending
task to start one (host/deadlines.py), which must not start a sweeper on each loop in turn
forever."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from contracts.events import AGENT_STARTED
from host.deadlines import Sweeper, shared

from .test_bus_sweeper_loops import STARTED, hung_bus


def test_idle_sweepers_stop_with_a_second_loop_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    other = asyncio.new_event_loop()

    async def wait_there() -> None:  # a pending task on `other`, nothing under a deadline
        await asyncio.sleep(3600)

    def run_other() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # cancelled at the end
            other.run_until_complete(wait_there())

    thread = threading.Thread(target=run_other, daemon=True)
    thread.start()
    starts: list[asyncio.AbstractEventLoop] = []
    start = shared._start_sweeper

    def counted(loop: asyncio.AbstractEventLoop) -> Sweeper:
        starts.append(loop)
        return start(loop)

    monkeypatch.setattr(shared, "_start_sweeper", counted)

    async def main() -> tuple[int, int]:
        bus, failures = hung_bus(0.05)
        await bus.emit(AGENT_STARTED, STARTED)  # times out: a sweeper ran here, then stops
        assert len(failures) == 1
        await asyncio.sleep(1.0)  # idle: every sweeper stops within a few resolutions
        settled = len(starts)
        await asyncio.sleep(1.5)
        return settled, len(starts)

    try:
        settled, later = asyncio.run(main())
    finally:
        for task in asyncio.all_tasks(other):
            other.call_soon_threadsafe(task.cancel)
        thread.join(5)
        other.close()
    assert later == settled, f"{later - settled} sweepers started while idle ({settled} before)"
