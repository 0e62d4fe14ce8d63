"""A plugin's handles on the host's shared services: the event bus, the model registry and the
provider cache, each bound to the plugin's name.

The container injects these instead of the services themselves into whatever a plugin
constructs (its ``__init__``, its service factories), so a plugin touches only what it owns:
subscriptions it makes are tagged with its name (and removed when it unloads), and removing
another plugin's subscriptions, model handlers or cached providers is an `OwnershipError`
naming both plugins, instead of the audit trail silently going deaf while ``/plugins/audit``
still says loaded. Calls on a plugin's own things go straight to the service.

This guards against careless plugins and obvious misuse, not against code bent on breaking
the process it runs in (in-process Python can reach any object); plugins are trusted code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, Unpack

from contracts.agent import CachePolicy
from contracts.cache import CacheContext, CacheStats
from contracts.errors import OwnershipError
from contracts.events import AnyHandler, Event, EventPayload, Handler
from contracts.models import ModelHandler, ModelParams, ModelType
from host.cache import ProviderCache
from host.event_subscriptions import SubscribeOptions
from host.events import EventBus, HandlerSubscription
from host.models import ModelRegistry

__all__ = ["HOST_OWNERS", "PluginBus", "PluginCache", "PluginModels"]

P = TypeVar("P", bound=EventPayload)
MP = TypeVar("MP", bound=ModelParams)
R = TypeVar("R")
T = TypeVar("T")

HOST_OWNERS: Final = frozenset({"host"})
"""Binding owners that get the services themselves (the host's own bindings)."""


def _refuse(plugin: str, what: str, other: str | None) -> OwnershipError:
    whose = f"plugin {other}" if other and other not in HOST_OWNERS else "the host"
    return OwnershipError(
        f"plugin {plugin} may not {what} of {whose}: a plugin's handle on a host service only"
        " touches what that plugin registered"
    )


def _not_offered(plugin: str, service: str, name: str, offered: str) -> AttributeError:
    return AttributeError(
        f"plugin {plugin}: {service}.{name} is the host's; a plugin's {service} handle offers"
        f" {offered}"
    )


class _OwnSubscription:
    """What `PluginBus.on` returns: the subscription's state and `cancel`, not the bus."""

    __slots__ = ("_sub",)

    def __init__(self, sub: HandlerSubscription) -> None:
        self._sub = sub

    @property
    def active(self) -> bool:
        return self._sub.active

    def cancel(self) -> None:
        self._sub.cancel()

    def __repr__(self) -> str:
        return f"<subscription {self._sub.label} {'active' if self.active else 'cancelled'}>"


class PluginBus:
    """The event bus as plugin `plugin` sees it (the EVENTS service injected into a plugin)."""

    __slots__ = ("_bus", "emit", "plugin")

    _OFFERED: Final = "on, on_any, off, emit, subscriptions and unregister_owner (its own)"

    def __init__(self, bus: EventBus, plugin: str) -> None:
        self._bus = bus
        self.plugin = plugin
        self.emit = bus.emit
        """The bus's own emit: emitting is open to every plugin, and a handle adds no call."""

    def _owner(self, owner: str | None) -> str:
        if owner is not None and owner != self.plugin:
            raise _refuse(self.plugin, "subscribe on behalf", owner)
        return self.plugin

    def on(
        self,
        event: Event[P],
        handler: Handler[P],
        *,
        owner: str | None = None,
        **options: Unpack[SubscribeOptions],
    ) -> _OwnSubscription:
        """`EventBus.on`, tagged with this plugin's name (removed when it unloads)."""
        return _OwnSubscription(self._bus.on(event, handler, owner=self._owner(owner), **options))

    def on_any(
        self, handler: AnyHandler, *, owner: str | None = None, **options: Unpack[SubscribeOptions]
    ) -> _OwnSubscription:
        """`EventBus.on_any`, tagged with this plugin's name."""
        return _OwnSubscription(self._bus.on_any(handler, owner=self._owner(owner), **options))

    def off(self, event: Event[P], handler: Handler[P]) -> bool:
        """Remove this plugin's subscriptions of `handler` to `event`; False if it had none.
        `handler` subscribed only by other plugins is refused, naming them."""
        matching = [s for s in self._bus.subscriptions(event) if s.handler == handler]
        own = [s for s in matching if s.owner == self.plugin]
        if matching and not own:
            raise _refuse(
                self.plugin, f"unsubscribe a handler of {event.name!r}", matching[0].owner
            )
        for sub in own:
            sub.cancel()
        return bool(own)

    def subscriptions(self, event: Event[Any] | None = None) -> list[str]:
        """Labels of this plugin's active subscriptions (to `event`), in run order."""
        return [s.label for s in self._bus.subscriptions(event) if s.owner == self.plugin]

    def unregister_owner(self, owner: str) -> int:
        """Remove this plugin's own subscriptions; another owner's is an `OwnershipError`."""
        if owner != self.plugin:
            raise _refuse(self.plugin, "remove the event subscriptions", owner)
        return self._bus.unregister_owner(owner)

    def unregister_plugin(self, name: str) -> None:
        self.unregister_owner(name)

    def __getattr__(self, name: str) -> Any:
        raise _not_offered(self.plugin, "event bus", name, self._OFFERED)

    def __repr__(self) -> str:
        return f"<event bus handle of plugin {self.plugin}>"


class PluginModels:
    """The model registry as plugin `plugin` sees it (the MODELS service injected into it)."""

    __slots__ = ("_registry", "plugin", "stream_model", "use_model")

    _OFFERED: Final = (
        "use_model, stream_model, providers, registered, register and unregister_owner (its own)"
    )

    def __init__(self, registry: ModelRegistry, plugin: str) -> None:
        self._registry = registry
        self.plugin = plugin
        # the registry's own methods: calling models is open to every plugin, and a handle
        # adds no call on the way
        self.use_model = registry.use_model
        self.stream_model = registry.stream_model

    def providers(self, model_type: ModelType[Any, Any] | str) -> list[str]:
        return self._registry.providers(model_type)

    def registered(self) -> dict[str, list[str]]:
        return self._registry.registered()

    def register(
        self,
        handler: ModelHandler[Any, Any],
        *,
        owner: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Add a model handler owned by this plugin (removed when it unloads)."""
        if owner is not None and owner != self.plugin:
            raise _refuse(self.plugin, "register model handlers on behalf", owner)
        self._registry.register(handler, owner=self.plugin, priority=priority)

    def unregister_owner(self, owner: str) -> int:
        if owner != self.plugin:
            raise _refuse(self.plugin, "remove the model handlers", owner)
        return self._registry.unregister_owner(owner)

    def unregister_plugin(self, name: str) -> None:
        self.unregister_owner(name)

    def __getattr__(self, name: str) -> Any:
        raise _not_offered(self.plugin, "model registry", name, self._OFFERED)

    def __repr__(self) -> str:
        return f"<model registry handle of plugin {self.plugin}>"


class PluginCache:
    """The provider cache as plugin `plugin` sees it (the CACHE service injected into it).

    Reading and invalidating are open to every plugin (an invalidation costs a recomputation,
    it loses nothing); registering, unregistering and clearing touch only its own providers."""

    __slots__ = ("_cache", "plugin")

    _OFFERED: Final = (
        "get_or_compute, invalidate, stats, policy, register, unregister and"
        " unregister_owner (its own providers)"
    )

    def __init__(self, cache: ProviderCache, plugin: str) -> None:
        self._cache = cache
        self.plugin = plugin

    async def get_or_compute(
        self, provider: str, context: CacheContext, compute: Callable[[], Awaitable[T]]
    ) -> T:
        return await self._cache.get_or_compute(provider, context, compute)

    def invalidate(self, provider: str, context: CacheContext | None = None) -> int:
        return self._cache.invalidate(provider, context)

    def stats(self) -> CacheStats:
        return self._cache.stats()

    def policy(self, provider: str) -> CachePolicy | None:
        return self._cache.policy(provider)

    def _check(self, provider: str, what: str) -> None:
        owner = self._cache.owner_of(provider)
        if owner is not None and owner != self.plugin:
            raise _refuse(self.plugin, f"{what} cached provider {provider!r}", owner)

    def register(self, provider: str, policy: CachePolicy, *, owner: str | None = None) -> None:
        if owner is not None and owner != self.plugin:
            raise _refuse(self.plugin, "register cached providers on behalf", owner)
        self._check(provider, "replace the policy of")
        self._cache.register(provider, policy, owner=self.plugin)

    def unregister(self, provider: str) -> None:
        self._check(provider, "unregister")
        self._cache.unregister(provider)

    def unregister_owner(self, owner: str) -> None:
        if owner != self.plugin:
            raise _refuse(self.plugin, "drop the cached providers", owner)
        self._cache.unregister_owner(owner)

    def __getattr__(self, name: str) -> Any:
        raise _not_offered(self.plugin, "provider cache", name, self._OFFERED)

    def __repr__(self) -> str:
        return f"<provider cache handle of plugin {self.plugin}>"
