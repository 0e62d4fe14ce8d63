"""The component registry: plugins' actions/providers/evaluators registered and removed by owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from contracts.agent import (
    Action,
    ActionContext,
    ActionResult,
    CachePolicy,
    Evaluator,
    Provider,
    ProviderResult,
    State,
)
from contracts.memory import Memory
from contracts.plugin import Manifest, Plugin
from host.cache import ProviderCache
from host.components import ComponentConflictError, ComponentRegistry


async def _get(message: Memory, state: State) -> ProviderResult:
    return ProviderResult(text="x")


async def _act(ctx: ActionContext) -> ActionResult:
    return ActionResult()


class _Weather(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="weather")

    def actions(self) -> list[Action]:
        return [Action("FORECAST", "tell the forecast", _act, similes=("WEATHER", "RAIN"))]

    def providers(self) -> list[Provider]:
        return [
            Provider("weather.now", _get, position=5, cache=CachePolicy(ttl=60)),
            Provider("weather.early", _get, position=-1),
        ]

    def evaluators(self) -> list[Evaluator]:
        return [Evaluator("weather.reflect", "", _act)]


class _Clash(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="clash")

    def actions(self) -> list[Action]:
        return [Action("OTHER", "fine", _act)]

    def providers(self) -> list[Provider]:
        return [Provider("weather.now", _get)]


@dataclass
class _Loaded:
    manifest: Manifest
    instance: Plugin


def _loaded(plugin: Plugin) -> _Loaded:
    return _Loaded(type(plugin).manifest, plugin)


def test_register_and_unregister_by_owner() -> None:
    cache = ProviderCache()
    registry = ComponentRegistry(cache)
    registry.register_plugin(_loaded(_Weather()))
    assert [a.name for a in registry.actions] == ["FORECAST"]
    assert [p.name for p in registry.providers] == ["weather.early", "weather.now"]
    assert [e.name for e in registry.evaluators] == ["weather.reflect"]
    assert registry.owner_of("provider", "weather.now") == "weather"
    assert cache.policy("weather.now") == CachePolicy(ttl=60)
    version = registry.version
    registry.unregister_plugin("weather")
    assert registry.actions == [] and registry.providers == [] and registry.evaluators == []
    assert cache.policy("weather.now") is None
    assert registry.version > version


def test_find_action_by_name_or_simile_case_insensitive() -> None:
    registry = ComponentRegistry()
    registry.register_plugin(_loaded(_Weather()))
    action = registry.find_action("forecast")
    assert action is not None
    assert registry.find_action("rain") is action
    assert registry.find_action("SNOW") is None


def test_conflict_is_all_or_nothing_and_names_both_plugins() -> None:
    registry = ComponentRegistry()
    registry.register_plugin(_loaded(_Weather()))
    with pytest.raises(ComponentConflictError, match=r"weather\.now.*plugin weather"):
        registry.register_plugin(_loaded(_Clash()))
    # clash's action (registered before its provider failed) is gone again
    assert [a.name for a in registry.actions] == ["FORECAST"]
    assert registry.owner_of("provider", "weather.now") == "weather"


def test_same_owner_reregistering_replaces() -> None:
    registry = ComponentRegistry()
    registry.register_plugin(_loaded(_Weather()))
    registry.register_plugin(_loaded(_Weather()))
    assert len(registry.actions) == 1


def test_wrong_component_type_rejected() -> None:
    class Bad(Plugin):
        manifest: ClassVar[Manifest] = Manifest(name="bad")

        def actions(self) -> list[Action]:
            return ["not an action"]  # type: ignore[list-item]

    registry = ComponentRegistry()
    with pytest.raises(ComponentConflictError, match="plugin bad: its actions\\(\\) returned"):
        registry.register_plugin(_loaded(Bad()))
    assert registry.actions == []
