"""The event bus: order, isolation, detached handlers, unsubscribe, plugin hooks, payload checks."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.config import EventsSettings
from contracts.events import (
    AGENT_STARTED,
    AGENT_STOPPED,
    HANDLER_FAILED,
    AgentPayload,
    Event,
    EventError,
    EventHandler,
    EventPayload,
    HandlerFailedPayload,
    PayloadTypeError,
)
from contracts.hooks import hookimpl
from host.events import EventBus

STARTED = AgentPayload(agent_id=uuid4(), name="eliza")


async def test_handlers_run_by_priority_then_registration_sync_and_async() -> None:
    bus = EventBus()
    seen: list[str] = []

    async def late(payload: AgentPayload) -> None:
        await asyncio.sleep(0)
        seen.append(f"async:{payload.name}")

    bus.on(AGENT_STARTED, lambda p: seen.append("first-registered"))
    bus.on(AGENT_STARTED, late)
    bus.on(AGENT_STARTED, lambda p: seen.append("high"), priority=10)
    bus.on_any(lambda event, p: seen.append(f"any:{event.name}"), priority=100)
    await bus.emit(AGENT_STARTED, STARTED)
    assert seen == ["high", "first-registered", "async:eliza", "any:agent:started"]


@given(st.lists(st.integers(min_value=-3, max_value=3), min_size=1, max_size=12))
def test_order_is_priority_descending_then_registration(priorities: list[int]) -> None:
    bus = EventBus()
    seen: list[int] = []
    for index, priority in enumerate(priorities):
        bus.on(AGENT_STARTED, lambda p, i=index: seen.append(i), priority=priority)
    asyncio.run(bus.emit(AGENT_STARTED, STARTED))
    expected = sorted(range(len(priorities)), key=lambda i: (-priorities[i], i))
    assert seen == expected


async def test_a_failing_handler_is_isolated_and_reported_once() -> None:
    bus = EventBus()
    seen: list[str] = []
    failures: list[HandlerFailedPayload] = []

    def broken(payload: AgentPayload) -> None:
        raise RuntimeError("kaput")

    def broken_reporter(payload: HandlerFailedPayload) -> None:
        failures.append(payload)
        raise RuntimeError("the reporter fails too")

    bus.on(AGENT_STARTED, broken, owner="flaky", priority=5)
    bus.on(AGENT_STARTED, lambda p: seen.append("after"))
    bus.on(HANDLER_FAILED, broken_reporter)
    await bus.emit(AGENT_STARTED, STARTED)  # does not raise
    assert seen == ["after"]
    assert len(failures) == 1  # the reporter's own failure is logged, not re-emitted
    assert failures[0].plugin == "flaky"
    assert failures[0].event == "agent:started"
    assert "RuntimeError: kaput" in failures[0].error
    assert bus.failures == 2


async def test_a_slow_handler_times_out_and_is_reported() -> None:
    bus = EventBus(EventsSettings(handler_timeout=0.05))
    failures: list[HandlerFailedPayload] = []

    async def slow(payload: AgentPayload) -> None:
        await asyncio.sleep(5)

    bus.on(AGENT_STARTED, slow, owner="sloth")
    bus.on(HANDLER_FAILED, failures.append)
    await asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 2)
    assert failures and failures[0].timed_out and failures[0].plugin == "sloth"


async def test_detached_handlers_do_not_block_the_emit_and_close_waits() -> None:
    bus = EventBus()
    release = asyncio.Event()
    done: list[str] = []

    async def background(payload: AgentPayload) -> None:
        await release.wait()
        done.append(payload.name)

    bus.on(AGENT_STARTED, background, detached=True)
    await asyncio.wait_for(bus.emit(AGENT_STARTED, STARTED), 1)
    assert bus.pending == 1 and done == []
    release.set()
    await bus.aclose()
    assert done == ["eliza"] and bus.pending == 0


async def test_close_cancels_detached_handlers_past_the_grace_period() -> None:
    bus = EventBus()
    cancelled = asyncio.Event()

    async def stuck(payload: AgentPayload) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.on(AGENT_STARTED, stuck, detached=True)
    await bus.emit(AGENT_STARTED, STARTED)
    await bus.aclose(grace=0.05)
    assert cancelled.is_set() and bus.pending == 0


async def test_detached_runs_are_bounded() -> None:
    bus = EventBus(EventsSettings(detached_limit=2))
    release = asyncio.Event()
    started = 0

    async def held(payload: AgentPayload) -> None:
        nonlocal started
        started += 1
        await release.wait()

    bus.on(AGENT_STARTED, held, detached=True)
    await bus.emit(AGENT_STARTED, STARTED)
    await bus.emit(AGENT_STARTED, STARTED)
    third = asyncio.create_task(bus.emit(AGENT_STARTED, STARTED))
    await asyncio.sleep(0.05)
    assert bus.pending == 2 and not third.done()  # the third emit waits for a slot
    release.set()
    await asyncio.wait_for(third, 1)
    await bus.aclose()
    assert started == 3


async def test_off_cancel_and_unregister_owner() -> None:
    bus = EventBus()
    seen: list[str] = []

    def a(payload: AgentPayload) -> None:
        seen.append("a")

    sub_b = bus.on(AGENT_STARTED, lambda p: seen.append("b"))
    bus.on(AGENT_STARTED, a)
    bus.on(AGENT_STARTED, lambda p: seen.append("plugin"), owner="weather")
    bus.on_any(lambda e, p: seen.append("plugin-any"), owner="weather")
    await bus.emit(AGENT_STARTED, STARTED)
    assert seen == ["b", "a", "plugin", "plugin-any"]
    seen.clear()
    assert bus.off(AGENT_STARTED, a) and not bus.off(AGENT_STARTED, a)
    sub_b.cancel()
    sub_b.cancel()
    assert bus.unregister_owner("weather") == 2
    await bus.emit(AGENT_STARTED, STARTED)
    assert seen == [] and not sub_b.active


class Greeter:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    async def on_agent_started(self, payload: AgentPayload) -> None:
        self.seen.append(f"started:{payload.name}")

    @hookimpl
    def on_agent_stopped(self, payload: AgentPayload) -> None:
        self.seen.append(f"stopped:{payload.name}")

    def event_handlers(self) -> list[EventHandler[AgentPayload]]:
        return [EventHandler(AGENT_STARTED, lambda p: self.seen.append("typed"), priority=-1)]


async def test_plugin_hooks_and_event_handlers_are_subscribed_and_unloaded() -> None:
    bus = EventBus()
    plugin = Greeter()
    assert bus.subscribe_plugin("greeter", plugin) == 3
    await bus.emit(AGENT_STARTED, STARTED)
    await bus.emit(AGENT_STOPPED, STARTED)
    assert plugin.seen == ["started:eliza", "typed", "stopped:eliza"]
    assert bus.unregister_owner("greeter") == 3
    await bus.emit(AGENT_STARTED, STARTED)
    assert len(plugin.seen) == 3
    # the same object can be registered again (a reload)
    assert bus.subscribe_plugin("greeter", plugin) == 3


async def test_a_hook_with_a_wrong_signature_or_name_is_rejected_naming_the_plugin() -> None:
    class WrongArgs:
        @hookimpl
        def on_agent_started(self, agent: AgentPayload) -> None: ...

    class Unknown:
        @hookimpl
        def on_weather_changed(self, payload: AgentPayload) -> None: ...

    bus = EventBus()
    with pytest.raises(EventError, match="wrongargs"):
        bus.subscribe_plugin("wrongargs", WrongArgs())
    with pytest.raises(EventError, match="unknown hook 'on_weather_changed'"):
        bus.subscribe_plugin("unknown", Unknown())
    assert bus.subscriptions() == []


async def test_wrong_payload_from_untyped_code_names_the_event_and_the_field() -> None:
    bus = EventBus()
    seen: list[AgentPayload] = []
    bus.on(AGENT_STARTED, seen.append)
    untyped: object = HandlerFailedPayload(event="x", handler="h", error="e")
    with pytest.raises(
        PayloadTypeError,
        match=r"'agent:started' takes a payload of type AgentPayload, got HandlerFailedPayload"
        r" \(field agent_id: Field required",
    ):
        await bus.emit(AGENT_STARTED, untyped)  # type: ignore[misc]
    with pytest.raises(PayloadTypeError, match="takes a payload of type AgentPayload, got str"):
        await bus.emit(AGENT_STARTED, "hello")  # type: ignore[misc]
    raw: object = {"agent_id": str(STARTED.agent_id), "name": "raw"}
    await bus.emit(AGENT_STARTED, raw)  # type: ignore[misc]
    assert seen[0].name == "raw" and seen[0].agent_id == STARTED.agent_id
    assert len(seen) == 1  # the refused emits reached no handler


async def test_another_model_with_the_same_fields_is_refused_not_converted() -> None:
    """Structurally equal is not the same event: mypy rejects it, so the bus does too (only a
    hot-reloaded copy of the payload class itself is converted, see test_plugin_events)."""

    class LookAlike(EventPayload):
        agent_id: UUID
        name: str

    bus = EventBus()
    seen: list[AgentPayload] = []
    bus.on(AGENT_STARTED, seen.append)
    twin: object = LookAlike(agent_id=STARTED.agent_id, name="twin")
    with pytest.raises(PayloadTypeError, match=r"AgentPayload, got LookAlike$"):
        await bus.emit(AGENT_STARTED, twin)  # type: ignore[misc]
    assert seen == [] and bus.counts["agent:started"] == 0


def test_plugins_declare_their_own_events_and_names_are_unique() -> None:
    class WeatherPayload(EventPayload):
        city: str

    class OtherPayload(EventPayload):
        x: int

    weather = Event("test-weather:fetched", WeatherPayload)
    assert Event("test-weather:fetched", WeatherPayload).name == weather.name
    with pytest.raises(EventError, match="already declared"):
        Event("test-weather:fetched", OtherPayload)


async def test_a_plugin_that_fails_half_way_is_not_half_subscribed() -> None:
    class HalfBroken:
        @hookimpl
        def on_agent_started(self, payload: AgentPayload) -> None: ...

        def event_handlers(self) -> list[object]:
            return ["not a handler"]

    bus = EventBus()
    with pytest.raises(EventError, match="halfbroken: event_handlers"):
        bus.subscribe_plugin("halfbroken", HalfBroken())
    assert bus.subscriptions() == []
