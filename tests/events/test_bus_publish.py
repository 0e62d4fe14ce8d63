"""`EventBus.publish`: an emit whose handlers are plain functions runs them at once, without a
coroutine, and any other emit ends as `emit` would have ended it: the same handlers in the
same order, the same failures reported, the same counts."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.config import EventsSettings
from contracts.events import (
    AGENT_STARTED,
    HANDLER_FAILED,
    AgentPayload,
    Event,
    EventPayload,
    HandlerFailedPayload,
)
from host.events import EventBus, HandlerSubscription

STARTED = AgentPayload(agent_id=uuid4(), name="eliza")

KINDS = ("plain", "raises", "awaitable", "value", "async", "any", "removes_next", "detached")
"""How a test handler behaves: a plain function; one raising; one returning a coroutine (which
the emit awaits) or a value that is not awaitable (ignored); a coroutine function; a handler of
every event; one unsubscribing the handler subscribed after it; a detached one."""


class Trace:
    """One bus with the handlers of a list of kinds, and what they did."""

    def __init__(self, kinds: list[tuple[str, int]], settings: EventsSettings) -> None:
        self.bus = EventBus(settings)
        self.seen: list[str] = []
        self.failures: list[tuple[str | None, str, str, bool]] = []
        self.subs: list[HandlerSubscription] = []
        self.bus.on(HANDLER_FAILED, self._failed)
        for index, (kind, priority) in enumerate(kinds):
            self._subscribe(index, kind, priority)

    def _failed(self, payload: HandlerFailedPayload) -> None:
        self.failures.append((payload.plugin, payload.handler, payload.error, payload.timed_out))

    def _subscribe(self, index: int, kind: str, priority: int) -> None:
        name = f"{kind}{index}"
        seen = self.seen
        owner = f"plugin{index}"
        handler: Callable[..., object]

        def plain(payload: AgentPayload) -> None:
            seen.append(name)

        def raises(payload: AgentPayload) -> None:
            seen.append(name)
            raise RuntimeError(name)

        def awaitable(payload: AgentPayload) -> Awaitable[None]:
            seen.append(name)

            async def later() -> None:
                await asyncio.sleep(0)
                seen.append(f"{name} awaited")

            return later()

        def value(payload: AgentPayload) -> int:
            seen.append(name)
            return 42

        async def coroutine(payload: AgentPayload) -> None:
            await asyncio.sleep(0)
            seen.append(name)

        def removes_next(payload: AgentPayload) -> None:
            seen.append(name)
            if index + 1 < len(self.subs):
                self.subs[index + 1].cancel()

        def anything(event: Event[EventPayload], payload: EventPayload) -> None:
            if event is AGENT_STARTED:
                seen.append(name)

        if kind == "any":
            self.subs.append(self.bus.on_any(anything, owner=owner, priority=priority))
            return
        handler = {
            "plain": plain,
            "raises": raises,
            "awaitable": awaitable,
            "value": value,
            "async": coroutine,
            "removes_next": removes_next,
            "detached": plain,
        }[kind]
        self.subs.append(
            self.bus.on(
                AGENT_STARTED, handler, owner=owner, priority=priority, detached=kind == "detached"
            )
        )

    def outcome(self) -> tuple[object, ...]:
        return (self.seen, self.failures, self.bus.counts, self.bus.failures)


handlers = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(-1, 1)), max_size=7)


@settings(max_examples=80, deadline=None)
@given(handlers)
def test_publish_ends_as_emit_does_for_any_handlers(kinds: list[tuple[str, int]]) -> None:
    async def play() -> None:
        emitted, published = Trace(kinds, EventsSettings()), Trace(kinds, EventsSettings())
        for _ in range(2):  # the second time with handlers the first one removed
            await emitted.bus.emit(AGENT_STARTED, STARTED)
            pending = published.bus.publish(AGENT_STARTED, STARTED)
            if pending is not None:
                await pending
            assert await emitted.bus.drain(2) and await published.bus.drain(2)
            assert published.outcome() == emitted.outcome()

    asyncio.run(play())


async def test_plain_handlers_have_run_when_publish_returns_none() -> None:
    trace = Trace(
        [("plain", 0), ("any", 1), ("removes_next", -1), ("raises", -2)], EventsSettings()
    )
    assert trace.bus.publish(AGENT_STARTED, STARTED) is None  # no coroutine to await
    assert trace.seen == ["plain0", "removes_next2", "any1"]  # the one raising was removed
    assert trace.bus.counts["agent:started"] == 1 and trace.failures == []


async def test_a_handler_failing_in_publish_is_reported_and_the_rest_run_when_awaited() -> None:
    trace = Trace([("raises", 1), ("plain", 0)], EventsSettings())
    pending = trace.bus.publish(AGENT_STARTED, STARTED)
    assert pending is not None and trace.seen == ["raises0"]  # the rest waits for the await
    await pending
    assert trace.seen == ["raises0", "plain1"]
    assert trace.failures == [("plugin0", "plugin0:Trace._subscribe.<locals>.raises",
                               "RuntimeError: raises0", False)]  # fmt: skip


def _note(seen: list[str], payload: AgentPayload) -> None:
    seen.append("ran")


async def test_an_exception_a_plain_handler_returns_is_a_value_not_a_failure() -> None:
    for publish in (True, False):
        bus = EventBus(EventsSettings())
        failures: list[HandlerFailedPayload] = []
        after: list[str] = []
        bus.on(HANDLER_FAILED, failures.append)
        bus.on(AGENT_STARTED, lambda payload: ValueError("a value"), priority=1)
        bus.on(AGENT_STARTED, functools.partial(_note, after))
        if publish:
            pending = bus.publish(AGENT_STARTED, STARTED)
            if pending is not None:
                await pending
        else:
            await bus.emit(AGENT_STARTED, STARTED)
        assert failures == [] and after == ["ran"], publish


async def test_an_awaitable_a_plain_handler_returns_is_timed_like_an_emits() -> None:
    bus = EventBus(EventsSettings(handler_timeout=0.1))
    failures: list[HandlerFailedPayload] = []
    after: list[str] = []
    bus.on(HANDLER_FAILED, failures.append)

    def slow(payload: AgentPayload) -> Awaitable[None]:
        return asyncio.sleep(5)

    bus.on(AGENT_STARTED, slow, owner="sloth", priority=1)
    bus.on(AGENT_STARTED, lambda p: after.append("next"))
    pending = bus.publish(AGENT_STARTED, STARTED)
    assert pending is not None
    await asyncio.wait_for(pending, 2)
    assert [(f.plugin, f.timed_out) for f in failures] == [("sloth", True)]
    assert after == ["next"]


async def test_cancelling_the_rest_of_a_publish_propagates_and_is_no_handler_failure() -> None:
    bus = EventBus(EventsSettings(handler_timeout=10))
    entered = asyncio.Event()
    after: list[str] = []

    def hangs(payload: AgentPayload) -> Awaitable[None]:
        entered.set()
        return asyncio.sleep(60)

    bus.on(AGENT_STARTED, hangs)
    bus.on(AGENT_STARTED, lambda p: after.append("next"))
    pending = bus.publish(AGENT_STARTED, STARTED)
    assert pending is not None

    async def rest() -> None:
        await pending

    task = asyncio.create_task(rest())
    await entered.wait()
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    assert done and task.cancelled()
    assert bus.failures == 0 and after == []
