"""Subscribing a plugin skips pluggy's attribute scan when no value pluggy could hook carries the
``@hookimpl`` mark (host/event_hooks.py): every form pluggy hooks is still found, and the bus
subscribes exactly what pluggy finds."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pluggy
import pytest

from contracts.events import AGENT_STARTED, AgentPayload
from contracts.hooks import hookimpl
from host import hookspecs
from host.event_hooks import _may_implement
from host.events import EventBus

STARTED = AgentPayload(agent_id=uuid4(), name="eliza")
SEEN: list[str] = []


class Method:
    @hookimpl
    def on_agent_started(self, payload: AgentPayload) -> None:
        SEEN.append("method")


class Inherited(Method):
    pass


class Static:
    @staticmethod
    @hookimpl
    def on_agent_started(payload: AgentPayload) -> None:
        SEEN.append("static")


class MarkedAbove:
    @hookimpl  # type: ignore[prop-decorator, misc]
    @staticmethod
    def on_agent_started(payload: AgentPayload) -> None:
        SEEN.append("marked above")


class Class:
    @classmethod
    @hookimpl
    def on_agent_started(cls, payload: AgentPayload) -> None:
        SEEN.append("classmethod")


def _instance_function() -> object:
    plugin = types.SimpleNamespace()

    @hookimpl
    def on_agent_started(payload: AgentPayload) -> None:
        SEEN.append("instance dict")

    plugin.on_agent_started = on_agent_started
    return plugin


class Slotted:
    __slots__ = ("on_agent_started", "unset")

    def __init__(self) -> None:
        self.on_agent_started = Method().on_agent_started  # a bound method in a slot


class Plain:
    """No mark anywhere; a property that must not be evaluated by the check."""

    limit = 3

    @property
    def boom(self) -> int:
        raise AssertionError("a property was evaluated")

    def on_agent_started(self, payload: AgentPayload) -> None:  # not marked: not a hook
        SEEN.append("plain")


def _module(marked: bool) -> types.ModuleType:
    module = types.ModuleType(f"hook_scan_{marked}")

    def on_agent_started(payload: AgentPayload) -> None:
        SEEN.append("module")

    module.on_agent_started = hookimpl(on_agent_started) if marked else on_agent_started  # type: ignore[attr-defined]
    return module


PLUGINS: dict[str, tuple[Callable[[], Any], bool]] = {
    "method": (Method, True),
    "inherited": (Inherited, True),
    "static": (Static, True),
    "marked above": (MarkedAbove, True),
    "classmethod": (Class, True),
    "instance dict": (_instance_function, True),
    "slotted": (Slotted, True),
    "module": (lambda: _module(True), True),
    "plain": (Plain, False),
    "plain module": (lambda: _module(False), False),
    "nothing": (object, False),
}


def _pluggy_finds(plugin: object) -> bool:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name="probe")
    return bool(pm.get_hookcallers(plugin))


@pytest.mark.parametrize("form", list(PLUGINS))
async def test_the_check_agrees_with_pluggy_and_the_bus_subscribes_what_it_finds(
    form: str,
) -> None:
    make, hooked = PLUGINS[form]
    plugin = make()
    assert _pluggy_finds(plugin) is hooked, "the case does not test what it says"
    assert _may_implement(plugin) is hooked
    SEEN.clear()
    bus = EventBus()
    assert bus.subscribe_plugin("probe", plugin) == int(hooked)
    await bus.emit(AGENT_STARTED, STARTED)
    assert len(SEEN) == int(hooked)


def test_a_plugin_without_marks_never_reaches_pluggy(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = EventBus()
    scanned: list[object] = []
    register = bus._pm.register

    def spy(plugin: object, name: str | None = None) -> str | None:
        scanned.append(plugin)
        return register(plugin, name)

    monkeypatch.setattr(bus._pm, "register", spy)
    assert bus.subscribe_plugin("plain", Plain()) == 0
    assert scanned == []
    marked = Method()
    assert bus.subscribe_plugin("marked", marked) == 1
    assert scanned == [marked]
