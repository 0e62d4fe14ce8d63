"""A plan's kept sweeper whose loop was closed (or left stopped) with the sweeper pending:
a later loop's emit must still time out a hung handler (host/events.py ``plan.swept``,
host/deadlines.py `Sweeper`)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from contracts.events import AGENT_STARTED
from host.deadlines import shared

from .test_bus_sweeper_loops import STARTED, emit_in_a_loop_of_its_own, hung_bus


def test_a_hung_handler_times_out_after_a_loop_closed_with_its_sweeper_pending() -> None:
    bus, failures = hung_bus(0.1)
    first = asyncio.new_event_loop()
    try:
        # One emit that times out on a loop run by hand (no asyncio.run): the sweeper is still
        # pending when run_until_complete returns, and the loop is closed without cancelling it.
        first.run_until_complete(asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 10))
    finally:
        first.close()
    assert [(f.plugin, f.timed_out) for f in failures] == [("hung", True)]
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):  # its 10 s bound: nobody swept
        emit_in_a_loop_of_its_own(bus)
    took = time.monotonic() - started
    assert took < 3, f"the hung handler ran {took:.1f} s unswept (limit 0.1 s)"
    assert [(f.plugin, f.timed_out) for f in failures] == [("hung", True)] * 2
    assert first not in shared._sweepers  # nor is the closed loop (and its task) kept for good
