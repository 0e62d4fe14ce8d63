"""The sweeper an event's plan keeps (host/deadlines.py `ensure`, `Sweeper`): an emit skips
making sure of a sweeper while the one its plan kept runs, yet a hung handler still times out
on every loop: a second ``asyncio.run``, a loop in another thread on the same bus (swept by
the first loop's sweeper asking it to start one) or on a fresh one."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import pytest

from contracts.config import EventsSettings
from contracts.events import AGENT_STARTED, HANDLER_FAILED, AgentPayload, HandlerFailedPayload
from host.deadlines import shared
from host.events import EventBus

STARTED = AgentPayload(agent_id=uuid4(), name="eliza")


def hung_bus(limit: float) -> tuple[EventBus, list[HandlerFailedPayload]]:
    bus = EventBus(EventsSettings(handler_timeout=limit))
    failures: list[HandlerFailedPayload] = []
    bus.on(HANDLER_FAILED, failures.append)

    async def hung(payload: AgentPayload) -> None:
        await asyncio.sleep(30)

    bus.on(AGENT_STARTED, hung, owner="hung")
    return bus, failures


def emit_in_a_loop_of_its_own(bus: EventBus) -> float:
    """``asyncio.run`` of one emit (in the calling thread); the seconds it took."""
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 10))
    return time.monotonic() - started


def test_a_second_asyncio_run_times_out_a_hung_handler_again() -> None:
    bus, failures = hung_bus(0.1)
    for _ in range(2):  # the first run's sweeper ended with its loop: the second starts one
        assert emit_in_a_loop_of_its_own(bus) < 3
    assert [(f.plugin, f.timed_out) for f in failures] == [("hung", True)] * 2


@pytest.mark.parametrize("same_bus", [True, False], ids=["same bus", "fresh bus"])
async def test_a_loop_in_another_thread_times_out_its_hung_handler_while_this_one_sweeps(
    same_bus: bool,
) -> None:
    """On the same bus the other loop's emit finds the plan's sweeper running (this loop's)
    and does not start one: this loop's sweeper sees it suspended and has that loop start
    one. A fresh bus's plan has kept none: its emit starts its own."""
    bus, failures = hung_bus(0.5)
    here = asyncio.create_task(bus.emit(AGENT_STARTED, STARTED))
    await asyncio.sleep(0.05)  # suspended in the hung handler: this loop's sweeper runs
    loop = asyncio.get_running_loop()
    assert shared._sweepers[loop].running
    other, other_failures = (bus, failures) if same_bus else hung_bus(0.5)
    took = await asyncio.to_thread(emit_in_a_loop_of_its_own, other)
    await asyncio.wait_for(here, 3)
    assert took < 3  # its limit, plus a few resolutions at most
    assert [(f.plugin, f.timed_out) for f in failures] == [("hung", True)] * (1 + same_bus)
    assert [(f.plugin, f.timed_out) for f in other_failures] == [("hung", True)] * (1 + same_bus)
