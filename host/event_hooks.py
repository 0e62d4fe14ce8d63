"""Plugins' pluggy ``@hookimpl`` methods as event bus subscriptions: pluggy validates and
collects the implementations (`host.hookspecs`), the bus runs them (see `host.events` for why).
Refuses pluggy options the bus cannot honour (wrappers, tryfirst/trylast)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from types import MemberDescriptorType, ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from contracts.events import EventError, event_named
from host import hookspecs

if TYPE_CHECKING:
    from host.event_subscriptions import HandlerSubscription
    from host.events import EventBus

__all__ = ["subscribe_hooks"]


def subscribe_hooks(
    bus: EventBus, pm: pluggy.PluginManager, name: str, plugin: object, priority: int
) -> list[HandlerSubscription]:
    """Subscribe `plugin`'s ``@hookimpl`` methods to their events on `bus` (all or none),
    validated by `pm` (pluggy checks each implementation's arguments against its hook's)."""
    if not _may_implement(plugin):
        return []  # pluggy's scan of every attribute costs ~1 ms a plugin, at every start
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise EventError(f"plugin {name}: {exc}") from exc
    made: list[HandlerSubscription] = []
    try:
        for caller in pm.get_hookcallers(plugin) or ():
            event_name = hookspecs.HOOK_EVENTS.get(caller.name)
            event = event_named(event_name) if event_name else None
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if event is None:
                    if impl.optionalhook:
                        continue  # pluggy's "implement it if the host knows it"
                    raise EventError(f"plugin {name} implements unknown hook {caller.name!r}")
                _check_hookimpl(name, caller.name, impl)
                adapter = _hook_adapter(impl.function, "payload" in impl.argnames)
                made.append(bus.on(event, adapter, owner=name, priority=priority))
    except BaseException:
        for sub in made:
            sub.cancel()
        raise
    finally:
        pm.unregister(plugin)
    return made


_MARK = f"{hookspecs.PROJECT}_impl"
"""The attribute `hookimpl` sets on what it marks (pluggy's ``<project>_impl``)."""


def _may_implement(plugin: object) -> bool:
    """Whether pluggy's scan could find a ``@hookimpl`` on `plugin`: a value it could hook (in
    the instance's dict or slots, the class's or a module's namespace) carrying the mark, on
    itself or on its ``__func__`` (pluggy looks at both). False only when none does; a class
    given as the plugin is scanned by pluggy as usual."""
    if inspect.isclass(plugin):
        return True
    return any(
        getattr(value, _MARK, None) is not None
        or getattr(getattr(value, "__func__", None), _MARK, None) is not None
        for value in _namespace(plugin)
    )


def _namespace(plugin: object) -> Iterator[object]:
    """Every value pluggy's attribute lookup (``inspect.getattr_static``) may find on
    `plugin`: a module's globals, or the instance's dict and slots and its classes' dicts."""
    if isinstance(plugin, ModuleType):
        yield from vars(plugin).values()
        return
    yield from getattr(plugin, "__dict__", {}).values()
    for cls in type(plugin).__mro__:
        for value in vars(cls).values():
            if isinstance(value, MemberDescriptorType):  # a slot: its value on the instance
                try:
                    value = value.__get__(plugin, type(plugin))
                except AttributeError:
                    continue
            yield value


def _check_hookimpl(plugin: str, hook: str, impl: pluggy.HookImpl) -> None:
    """Refuse pluggy options the bus cannot honour rather than ignore them silently."""
    if impl.wrapper or impl.hookwrapper:
        raise EventError(
            f"plugin {plugin}: hook {hook!r} is a wrapper; event hooks are plain implementations"
            " (wrap nothing: every handler runs, isolated from the others)"
        )
    if impl.tryfirst or impl.trylast:
        raise EventError(
            f"plugin {plugin}: hook {hook!r} uses tryfirst/trylast; event handlers run by priority"
            " (set the plugin's manifest priority, or use EventHandler(..., priority=...))"
        )


def _hook_adapter(
    function: Callable[..., Any], wants_payload: bool
) -> Callable[[Any], Awaitable[None] | None]:
    """Hook implementations take ``payload=`` by keyword (or nothing: pluggy lets an
    implementation accept a subset of the spec's arguments); the bus passes it positionally."""

    def call(payload: Any) -> Awaitable[None] | None:
        result: Awaitable[None] | None = function(payload=payload) if wants_payload else function()
        return result

    call.__qualname__ = getattr(function, "__qualname__", "hook")
    return call
