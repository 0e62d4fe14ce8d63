"""The registry of plugins' actions, providers and evaluators (a loader `PluginRegistrar`).

The loader calls `register_plugin(loaded)` for each plugin in load order and
`unregister_plugin(name)` on unload or reload; every component is tagged with its plugin's name,
so unloading a plugin removes exactly what it added. Runtimes read the registry on every
message, so a reloaded plugin's components apply from the next message on.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from loguru import logger

from contracts.agent import Action, AgentError, Evaluator, Provider
from contracts.plugin import LoadedPluginLike

__all__ = ["ComponentConflictError", "ComponentRegistry", "LoadedPluginLike"]

_log = logger.bind(component="components")


class PolicyCache(Protocol):
    """The part of `host.cache.ProviderCache` the registry feeds provider cache policies to."""

    def register(self, provider: str, policy: Any, *, owner: str | None = None) -> None: ...

    def unregister_owner(self, owner: str) -> None: ...


class ComponentConflictError(AgentError):
    """Two plugins registering an action, provider or evaluator under the same name."""


C = TypeVar("C", Action, Provider, Evaluator)


@dataclass(frozen=True, slots=True)
class _Owned(Generic[C]):
    owner: str
    component: C


class ComponentRegistry:
    """Actions, providers and evaluators by name, each owned by the plugin that added it."""

    def __init__(self, cache: PolicyCache | None = None) -> None:
        self._actions: dict[str, _Owned[Action]] = {}
        self._providers: dict[str, _Owned[Provider]] = {}
        self._evaluators: dict[str, _Owned[Evaluator]] = {}
        self._cache = cache
        self.version = 0
        """Bumped on every change (lets callers memoize derived views)."""

    # ------------------------------------------------------------------ registrar role

    def register_plugin(self, loaded: LoadedPluginLike) -> None:
        """Add what the plugin's `actions()`, `providers()` and `evaluators()` return.

        All or nothing: a name taken by another plugin raises `ComponentConflictError` and
        nothing of this plugin stays registered.
        """
        name = loaded.manifest.name
        instance = loaded.instance
        try:
            self.add(
                name,
                actions=instance.actions(),
                providers=instance.providers(),
                evaluators=instance.evaluators(),
            )
        except Exception:
            self.unregister_plugin(name)
            raise

    def unregister_plugin(self, name: str) -> None:
        """Remove everything plugin `name` registered."""
        removed = 0
        removed += _drop_owner(self._actions, name)
        removed += _drop_owner(self._providers, name)
        removed += _drop_owner(self._evaluators, name)
        if self._cache is not None:
            self._cache.unregister_owner(name)
        if removed:
            self.version += 1
            _log.debug("removed {} components of plugin {}", removed, name)

    # ------------------------------------------------------------------ direct use

    def add(
        self,
        owner: str,
        *,
        actions: Iterable[Action] = (),
        providers: Iterable[Provider] = (),
        evaluators: Iterable[Evaluator] = (),
    ) -> None:
        """Register components for `owner` (a plugin name, or e.g. ``host`` / ``test``).

        The same owner registering a name again replaces its earlier component."""
        _put(self._actions, "action", owner, actions)
        for provider in _put(self._providers, "provider", owner, providers):
            if self._cache is not None:
                self._cache.register(provider.name, provider.cache, owner=owner)
        _put(self._evaluators, "evaluator", owner, evaluators)
        self.version += 1

    @property
    def actions(self) -> list[Action]:
        return [owned.component for owned in self._actions.values()]

    @property
    def providers(self) -> list[Provider]:
        """Providers in prompt order (position, then name)."""
        found = [owned.component for owned in self._providers.values()]
        return sorted(found, key=lambda p: (p.position, p.name))

    @property
    def evaluators(self) -> list[Evaluator]:
        return [owned.component for owned in self._evaluators.values()]

    def owner_of(self, kind: str, name: str) -> str | None:
        """The plugin that registered the ``action``/``provider``/``evaluator`` `name`."""
        owned: _Owned[Any] | None = None
        if kind == "action":
            owned = self._actions.get(name)
        elif kind == "provider":
            owned = self._providers.get(name)
        elif kind == "evaluator":
            owned = self._evaluators.get(name)
        return None if owned is None else owned.owner

    def find_action(self, name: str) -> Action | None:
        """The action called `name` or having it as a simile (case-insensitive)."""
        wanted = name.strip().upper()
        for action in self.actions:
            if action.name.upper() == wanted or wanted in (s.upper() for s in action.similes):
                return action
        return None


def _drop_owner(table: dict[str, _Owned[C]], owner: str) -> int:
    keys = [key for key, owned in table.items() if owned.owner == owner]
    for key in keys:
        del table[key]
    return len(keys)


def _put(table: dict[str, _Owned[C]], kind: str, owner: str, items: Iterable[C]) -> list[C]:
    """Check all `items` first, then add them: a bad one leaves the table unchanged."""
    batch = list(items)
    names: set[str] = set()
    for item in batch:
        _check_component(kind, owner, item)
        current = table.get(item.name)
        if (current is not None and current.owner != owner) or item.name in names:
            other = current.owner if current is not None and current.owner != owner else owner
            raise ComponentConflictError(
                f"plugin {owner}: {kind} {item.name!r} is already registered by plugin {other};"
                " component names must be unique (prefix them with the plugin name)"
            )
        names.add(item.name)
    for item in batch:
        table[item.name] = _Owned(owner, item)
    return batch


def _check_component(kind: str, owner: str, item: object) -> None:
    expected = {"action": Action, "provider": Provider, "evaluator": Evaluator}[kind]
    if not isinstance(item, expected):
        raise ComponentConflictError(
            f"plugin {owner}: its {kind}s() returned {item!r}, not a contracts.agent"
            f".{expected.__name__}"
        )
    name = getattr(item, "name", "")
    if not isinstance(name, str) or not name.strip():
        raise ComponentConflictError(f"plugin {owner}: a {kind} has an empty name")
    handler = getattr(item, "get" if kind == "provider" else "handler")
    if not callable(handler):
        raise ComponentConflictError(f"plugin {owner}: {kind} {name!r} has no callable handler")
    if getattr(item, "blocking", False):
        for function in (handler, getattr(item, "validate", None)):
            if function is not None and inspect.iscoroutinefunction(function):
                raise ComponentConflictError(
                    f"plugin {owner}: {kind} {name!r} is declared blocking but"
                    f" {getattr(function, '__qualname__', function)!r} is async; blocking=True"
                    " is for sync functions, which then run in a worker thread"
                )
