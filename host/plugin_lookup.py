"""One installed plugin by name, outside a running host: its class, its settings, an instance.

Commands that act on a store without starting a host (``agenthost events``, ``agenthost db
migrate``, cluster status, a replay's scratch store) find the plugin that owns it through its
entry point, as the host would, rather than importing ``builtin_plugins``: a store plugin
installed from elsewhere works the same way. What the command needs of the plugin is a
protocol of `contracts` (`MigratableStore`, `PooledStoreOpener`, `EventStoreSettings`...).
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import importlib_metadata
from pydantic import BaseModel

from contracts.config import HostConfig
from contracts.errors import AgentHostError
from contracts.plugin import ENTRY_POINT_GROUP, Plugin
from contracts.tokens import Token

__all__ = ["PluginNotFoundError", "construct", "open_service", "plugin_class", "plugin_settings"]

T = TypeVar("T")


class PluginNotFoundError(AgentHostError, LookupError):
    """No installed plugin has this name (or it cannot be imported or constructed here)."""


def plugin_class(name: str) -> type[Plugin]:
    """The class registered as plugin `name` (only its entry point is loaded)."""
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            factory = ep.load()
        except Exception as exc:
            raise PluginNotFoundError(f"plugin {name}: cannot import {ep.value}: {exc}") from None
        if not (isinstance(factory, type) and issubclass(factory, Plugin)):
            raise PluginNotFoundError(f"plugin {name}: {ep.value} is not a Plugin class")
        return factory
    raise PluginNotFoundError(
        f"plugin {name} is not installed (no {ENTRY_POINT_GROUP} entry point named {name})"
    )


def plugin_settings(name: str, config: HostConfig) -> BaseModel | None:
    """Plugin `name`'s settings from `config` (its section ``plugins.<name>``), validated by
    the model its manifest declares; None if it declares none."""
    model = plugin_class(name).manifest.settings
    return None if model is None else model.model_validate(config.plugins.section(name))


def construct(name: str, config: HostConfig) -> Plugin:
    """Plugin `name` constructed as the host would for a command: its settings and the
    `HostConfig` injected by type; any other parameter must have a default (not set up)."""
    cls = plugin_class(name)
    settings = plugin_settings(name, config)
    hints = typing.get_type_hints(cls.__init__)
    kwargs: dict[str, Any] = {}
    for param in list(inspect.signature(cls).parameters.values()):
        wanted = _types(hints.get(param.name))
        if settings is not None and type(settings) in wanted:
            kwargs[param.name] = settings
        elif HostConfig in wanted:
            kwargs[param.name] = config
        elif param.default is inspect.Parameter.empty:
            raise PluginNotFoundError(
                f"plugin {name} cannot be used outside a running host: its parameter"
                f" {param.name!r} needs a service"
            )
    return cls(**kwargs)


def _types(hint: Any) -> tuple[Any, ...]:
    """The types a parameter annotation admits (``X | None`` admits X and None)."""
    return typing.get_args(hint) or (hint,)


@contextlib.asynccontextmanager
async def open_service(plugin: Plugin, token: Token[T]) -> AsyncIterator[T]:
    """The service `plugin` binds to `token`, from a factory taking no argument (a store's
    ``open_adapter``), torn down on exit as its scope would."""
    service = next((s for s in plugin.services() if s.token.name == token.name), None)
    if service is None:
        raise PluginNotFoundError(f"plugin {plugin.manifest.name} provides no {token.name}")
    made: Any = service.factory()
    if inspect.isasyncgen(made):
        value: Any = await anext(made)
        try:
            yield value
        finally:
            await made.aclose()
        return
    if inspect.isawaitable(made):
        made = await made
    yield made
