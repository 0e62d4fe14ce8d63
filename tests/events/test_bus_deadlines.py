"""Handler deadlines (host/deadlines.py `watch`): each handler has its own limit, found by the
sweeper on the suspended emit, with nothing registered per handler."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from uuid import uuid4

from contracts.config import EventsSettings
from contracts.events import AGENT_STARTED, HANDLER_FAILED, AgentPayload, HandlerFailedPayload
from host.deadlines import shared
from host.events import EventBus

STARTED = AgentPayload(agent_id=uuid4(), name="eliza")


def failures_of(bus: EventBus) -> list[HandlerFailedPayload]:
    failures: list[HandlerFailedPayload] = []
    bus.on(HANDLER_FAILED, failures.append)
    return failures


async def test_two_slow_handlers_of_one_emit_each_time_out_and_the_next_runs() -> None:
    bus = EventBus(EventsSettings(handler_timeout=0.1))
    failures = failures_of(bus)
    ran: list[str] = []

    async def slow(payload: AgentPayload) -> None:
        await asyncio.sleep(5)

    async def fast(payload: AgentPayload) -> None:
        await asyncio.sleep(0)
        ran.append("fast")

    bus.on(AGENT_STARTED, slow, owner="first", priority=3)
    bus.on(AGENT_STARTED, slow, owner="second", priority=2)
    bus.on(AGENT_STARTED, fast, owner="third", priority=1)
    await asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 3)
    assert [(f.plugin, f.timed_out) for f in failures] == [("first", True), ("second", True)]
    assert ran == ["fast"]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # no cancellation left over for the emitter


async def test_each_handler_gets_its_whole_limit_not_what_the_earlier_ones_left() -> None:
    bus = EventBus(EventsSettings(handler_timeout=0.6))
    failures = failures_of(bus)

    async def takes_a_while(payload: AgentPayload) -> None:
        await asyncio.sleep(0.35)

    for index in range(3):  # 1.05 s in all: over the limit together, each well under it
        bus.on(AGENT_STARTED, takes_a_while, owner=f"p{index}")
    await bus.emit(AGENT_STARTED, STARTED)
    assert failures == []


async def test_many_short_emits_in_a_row_never_add_up_to_a_timeout() -> None:
    bus = EventBus(EventsSettings(handler_timeout=0.3))
    failures = failures_of(bus)

    async def short(payload: AgentPayload) -> None:
        await asyncio.sleep(0.02)

    bus.on(AGENT_STARTED, short)
    ends = time.monotonic() + 1.0  # the pooled deadline is reused by every emit
    while time.monotonic() < ends:
        await bus.emit(AGENT_STARTED, STARTED)
    assert failures == []


async def test_a_handler_swallowing_its_timeout_leaves_no_cancellation_behind() -> None:
    bus = EventBus(EventsSettings(handler_timeout=0.1))
    ran: list[str] = []

    async def stubborn(payload: AgentPayload) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            ran.append("swallowed")

    async def after(payload: AgentPayload) -> None:
        await asyncio.sleep(0.01)
        ran.append("after")

    bus.on(AGENT_STARTED, stubborn, priority=1)
    bus.on(AGENT_STARTED, after)
    await asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 3)
    assert ran == ["swallowed", "after"]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)


async def test_the_caller_cancelling_a_timed_handler_is_not_a_timeout() -> None:
    bus = EventBus(EventsSettings(handler_timeout=10))
    failures = failures_of(bus)
    started = asyncio.Event()

    async def waits(payload: AgentPayload) -> None:
        started.set()
        await asyncio.sleep(5)

    bus.on(AGENT_STARTED, waits)
    emitting = asyncio.create_task(bus.emit(AGENT_STARTED, STARTED))
    await started.wait()
    emitting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await emitting
    assert emitting.cancelled() and failures == []


async def test_new_settings_apply_to_the_next_emit() -> None:
    bus = EventBus(EventsSettings(handler_timeout=30))
    failures = failures_of(bus)
    pause = 0.0

    async def handler(payload: AgentPayload) -> None:
        await asyncio.sleep(pause)

    bus.on(AGENT_STARTED, handler, owner="sloth")
    await bus.emit(AGENT_STARTED, STARTED)  # the plan is built with the 30 s default
    bus.settings = EventsSettings(handler_timeout=0.05)
    pause = 5.0
    await asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 3)
    assert [(f.plugin, f.timed_out) for f in failures] == [("sloth", True)]


async def test_a_handler_after_one_that_swallowed_its_timeout_still_times_out() -> None:
    """The sweeper withdraws a swallowed expiry when it sees the emit armed with the next
    handler, and times that one as usual (it would otherwise hang with the emit)."""
    bus = EventBus(EventsSettings(handler_timeout=0.1))
    failures = failures_of(bus)

    async def stubborn(payload: AgentPayload) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)

    async def hung(payload: AgentPayload) -> None:
        await asyncio.sleep(30)

    bus.on(AGENT_STARTED, stubborn, owner="stubborn", priority=1)
    bus.on(AGENT_STARTED, hung, owner="hung")
    await asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 3)
    assert [(f.plugin, f.timed_out) for f in failures] == [("hung", True)]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_an_emit_inside_an_async_generator_is_swept_too() -> None:
    """The sweeper finds emits by walking each task's coroutines, through an async
    generator's ``asend`` (a streaming model call emits from one)."""
    bus = EventBus(EventsSettings(handler_timeout=0.1))
    failures = failures_of(bus)

    async def hung(payload: AgentPayload) -> None:
        await asyncio.sleep(30)

    bus.on(AGENT_STARTED, hung, owner="hung")

    async def stream() -> AsyncIterator[int]:
        yield 1
        await bus.emit(AGENT_STARTED, STARTED)
        yield 2

    async def consume() -> list[int]:
        return [item async for item in stream()]

    assert await asyncio.wait_for(asyncio.create_task(consume()), 3) == [1, 2]
    assert [(f.plugin, f.timed_out) for f in failures] == [("hung", True)]


async def test_emits_in_a_task_of_their_own_each_get_their_deadline() -> None:
    bus = EventBus(EventsSettings(handler_timeout=0.1))
    failures = failures_of(bus)

    async def hung(payload: AgentPayload) -> None:
        await asyncio.sleep(30)

    bus.on(AGENT_STARTED, hung, owner="hung")
    emits = [asyncio.create_task(bus.emit(AGENT_STARTED, STARTED)) for _ in range(5)]
    await asyncio.wait_for(asyncio.gather(*emits), 3)
    assert [(f.plugin, f.timed_out) for f in failures] == [("hung", True)] * 5


async def test_the_sweeper_stops_once_nothing_is_under_a_deadline() -> None:
    """No task left running (nor waking every 0.25 s) in an idle host."""
    bus = EventBus(EventsSettings(handler_timeout=5))

    async def brief(payload: AgentPayload) -> None:
        await asyncio.sleep(0.3)

    bus.on(AGENT_STARTED, brief)
    await bus.emit(AGENT_STARTED, STARTED)
    loop = asyncio.get_running_loop()
    assert loop in shared._sweepers  # it ran while the handler slept
    await asyncio.sleep(3 * shared.resolution)
    assert loop not in shared._sweepers
