"""The pluggy hooks: one per builtin event, typed like it; the pluggy options the bus honours."""

from __future__ import annotations

import inspect
from typing import get_type_hints
from uuid import uuid4

import pytest

from contracts.events import (
    AGENT_STARTED,
    AGENT_STOPPED,
    AgentPayload,
    EventError,
    EventHandler,
    event_named,
    registered_events,
)
from contracts.hooks import hookimpl
from host import hookspecs
from host.events import EventBus

STARTED = AgentPayload(agent_id=uuid4(), name="eliza")


def _specs() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def test_every_builtin_event_has_one_documented_hook_taking_its_payload() -> None:
    specs = _specs()
    assert set(specs) == set(hookspecs.HOOK_EVENTS)
    import contracts.events as module

    builtin = {
        value.name: value for value in vars(module).values() if isinstance(value, module.Event)
    }
    assert set(hookspecs.HOOK_EVENTS.values()) == set(builtin)
    for hook, event_name in hookspecs.HOOK_EVENTS.items():
        fn = specs[hook]
        assert inspect.getdoc(fn), f"hook {hook} is not documented"
        assert list(inspect.signature(fn).parameters) == ["payload"]  # type: ignore[arg-type]
        hints = get_type_hints(fn)
        assert hints["payload"] is builtin[event_name].payload, hook


class Counter:
    def __init__(self) -> None:
        self.calls = 0


async def test_a_hook_may_take_no_arguments_as_pluggy_allows() -> None:
    class Pinger(Counter):
        @hookimpl
        def on_agent_started(self) -> None:
            self.calls += 1

        @hookimpl
        async def on_agent_stopped(self) -> None:
            self.calls += 10

    bus = EventBus()
    plugin = Pinger()
    assert bus.subscribe_plugin("pinger", plugin) == 2
    await bus.emit(AGENT_STARTED, STARTED)
    await bus.emit(AGENT_STOPPED, STARTED)
    assert plugin.calls == 11 and bus.failures == 0


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"hookwrapper": True}, "is a wrapper"),
        ({"wrapper": True}, "is a wrapper"),
        ({"tryfirst": True}, "uses tryfirst/trylast"),
        ({"trylast": True}, "uses tryfirst/trylast"),
    ],
)
def test_pluggy_options_the_bus_cannot_honour_are_refused_naming_plugin_and_hook(
    options: dict[str, bool], complaint: str
) -> None:
    class Fancy:
        @hookimpl(**options)
        def on_agent_started(self, payload: AgentPayload):  # type: ignore[no-untyped-def]
            yield

        def event_handlers(self) -> list[EventHandler[AgentPayload]]:
            return [EventHandler(AGENT_STOPPED, lambda p: None)]

    bus = EventBus()
    with pytest.raises(EventError, match=rf"plugin fancy: hook 'on_agent_started' {complaint}"):
        bus.subscribe_plugin("fancy", Fancy())
    assert bus.subscriptions() == []  # nothing half-subscribed


async def test_an_optional_hook_the_host_does_not_know_is_skipped() -> None:
    class Optional(Counter):
        @hookimpl(optionalhook=True)
        def on_weather_changed(self, payload: AgentPayload) -> None:
            self.calls += 100

        @hookimpl
        def on_agent_started(self, payload: AgentPayload) -> None:
            self.calls += 1

    bus = EventBus()
    plugin = Optional()
    assert bus.subscribe_plugin("optional", plugin) == 1
    await bus.emit(AGENT_STARTED, STARTED)
    assert plugin.calls == 1


async def test_hooks_and_handlers_of_plugins_run_by_plugin_priority() -> None:
    seen: list[str] = []

    def plugin(tag: str) -> object:
        class Tagged:
            @hookimpl
            def on_agent_started(self, payload: AgentPayload) -> None:
                seen.append(tag)

        return Tagged()

    bus = EventBus()
    bus.subscribe_plugin("low", plugin("low"), priority=-5)
    bus.subscribe_plugin("first", plugin("first"))
    bus.subscribe_plugin("high", plugin("high"), priority=5)
    bus.subscribe_plugin("second", plugin("second"))
    await bus.emit(AGENT_STARTED, STARTED)
    assert seen == ["high", "first", "second", "low"]  # pluggy alone would run LIFO


async def test_the_loader_registrar_interface_subscribes_and_removes_by_plugin_name() -> None:
    from contracts.plugin import Manifest

    class Loaded:
        name = "greeter"
        manifest = Manifest(name="greeter", priority=3)

        def __init__(self) -> None:
            self.instance = self
            self.seen: list[str] = []

        @hookimpl
        def on_agent_started(self, payload: AgentPayload) -> None:
            self.seen.append(payload.name)

    bus = EventBus()
    loaded = Loaded()
    bus.register_plugin(loaded)
    [sub] = bus.subscriptions(AGENT_STARTED)
    assert (sub.owner, sub.priority) == ("greeter", 3)
    await bus.emit(AGENT_STARTED, STARTED)
    bus.unregister_plugin("greeter")
    await bus.emit(AGENT_STARTED, STARTED)
    assert loaded.seen == ["eliza"] and bus.subscriptions() == []


def test_builtin_events_are_registered_by_name() -> None:
    for name in hookspecs.HOOK_EVENTS.values():
        event = registered_events()[name]
        assert event_named(name) is event and event.name == name
