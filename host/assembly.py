"""The engine assembled from the configuration: the one place that wires its parts together.

`assemble` builds the app scope's services from their config sections (event bus, model
registry, provider cache, telemetry, component registry), the container with the host's tokens
provided in it (plugins get handles bound to their name, `host.handles`) and the plugin
loader. `agent_manager` adds the agents over them, `http_app` the HTTP API. `Host`, the test
kit (`host.testing`), the tests and bench/ all build their engines here, so what a test runs
is what the host runs.

`open_store` opens one store plugin alone (found through its entry point, configured like in
the host): the test kit's stores and the conformance suite's.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import importlib_metadata
from loguru import logger

from contracts.agent import Character
from contracts.cache import CACHE
from contracts.config import SETTINGS, HostConfig
from contracts.events import EVENTS
from contracts.logging import LOGGER
from contracts.memory import utc_now
from contracts.metrics import METRICS
from contracts.models import MODELS
from contracts.plugin import ENTRY_POINT_GROUP
from contracts.storage import DATABASE, DatabaseAdapter
from host.agents import AgentManager
from host.cache import ProviderCache
from host.components import ComponentRegistry
from host.config import LoadedConfig
from host.di import Container
from host.discovery import Discovered, from_entry_points
from host.embeddings import EmbeddingSpace
from host.events import EventBus
from host.handles import PluginBus, PluginCache, PluginModels
from host.loader import Loader
from host.metrics.telemetry import Telemetry, build_telemetry
from host.models import ModelRegistry
from host.plugin_lookup import construct, open_service
from host.runtime import AgentRuntime

if TYPE_CHECKING:
    from fastapi import FastAPI

    from host.http import Dispatch

__all__ = ["Engine", "agent_manager", "assemble", "discover_named", "http_app", "open_store"]

_log = logger.bind(plugin="host")


@dataclass(eq=False)
class Engine:
    """The app scope's services, the container they are provided in, and the plugin loader."""

    loaded_config: LoadedConfig
    events: EventBus
    models: ModelRegistry
    cache: ProviderCache
    telemetry: Telemetry
    components: ComponentRegistry
    container: Container
    loader: Loader

    @property
    def config(self) -> HostConfig:
        return self.loaded_config.config

    async def aclose(self) -> None:
        """Unload the plugins (in reverse), then close the app scope, the bus and telemetry;
        each step runs even if an earlier one failed."""
        await self.loader.unload_all()
        for name, close in (
            ("services", self.container.aclose),
            ("event bus", self.events.aclose),
            ("metrics", self.telemetry.aclose),
        ):
            try:
                await close()
            except Exception as exc:
                _log.opt(exception=exc).error("closing {} failed: {}", name, exc)


def assemble(
    config: LoadedConfig | HostConfig,
    *,
    owner: str = "host",
    cache_clock: Callable[[], float] | None = None,
) -> Engine:
    """The engine of `config`: each part built from its own section (``events``, ``models``,
    ``cache``, ``metrics``, ``services``); `owner` names the host's registrations (the test kit
    says ``test``); `cache_clock` replaces the provider cache's clock (tests)."""
    loaded = LoadedConfig(config, None) if isinstance(config, HostConfig) else config
    settings = loaded.config
    events = EventBus(settings.events)
    models = ModelRegistry(settings.models, events=events)
    clock: dict[str, Any] = {} if cache_clock is None else {"clock": cache_clock}
    cache = ProviderCache(settings.cache, **clock)
    telemetry = build_telemetry(settings.metrics)
    cache.bind(events)  # invalidation first among each event's handlers
    components = ComponentRegistry(cache)
    container = Container(pins=settings.services)
    container.provide(SETTINGS, settings, owner=owner)
    # Plugins get handles bound to their name (host.handles), not the services themselves.
    container.provide(EVENTS, events, owner=owner, view=partial(PluginBus, events))
    container.provide(MODELS, models, owner=owner, view=partial(PluginModels, models))
    container.provide(CACHE, cache, owner=owner, view=partial(PluginCache, cache))
    container.provide(METRICS, telemetry.collector, owner=owner)
    container.provide(LOGGER, _log, owner=owner)
    loader = Loader(
        container, [container, events, models, components], config=loaded, events=events
    )
    return Engine(loaded, events, models, cache, telemetry, components, container, loader)


def agent_manager(
    engine: Engine,
    characters: Iterable[Character],
    *,
    embeddings: EmbeddingSpace | None = None,
    clock: Callable[[], datetime] = utc_now,
    ids: Callable[[], UUID] = uuid4,
    runtime: Callable[..., AgentRuntime] = AgentRuntime,
    hooks: Mapping[str, Any] | None = None,
) -> AgentManager:
    """The agents of `characters` over `engine` (config section ``agents``); store metrics
    when ``metrics.enabled``; `runtime` builds each agent's runtime (the test kit's
    `TestRuntime`); `hooks` are cluster mode's (``wrap_database``, and ``ids`` replacing
    `ids`)."""
    options: dict[str, Any] = {"clock": clock, "ids": ids, **(hooks or {})}
    return AgentManager(
        engine.container,
        engine.events,
        engine.components,
        characters=characters,
        settings=engine.config.agents,
        metrics=engine.telemetry.internal if engine.config.metrics.enabled else None,
        embeddings=embeddings,
        runtime=runtime,
        **options,
    )


def http_app(engine: Engine, agents: AgentManager, dispatch: Dispatch | None = None) -> FastAPI:
    """The HTTP API of `agents` as config section ``http`` sets it up."""
    from host.http import app_from_settings  # FastAPI only when serving

    return app_from_settings(agents, engine.config.http, dispatch)


@functools.cache
def _entry_points(group: str) -> dict[str, list[importlib_metadata.EntryPoint]]:
    found: dict[str, list[importlib_metadata.EntryPoint]] = {}
    for ep in importlib_metadata.entry_points(group=group):
        found.setdefault(ep.name, []).append(ep)
    return found


def discover_named(names: Sequence[str], group: str = ENTRY_POINT_GROUP) -> list[Discovered]:
    """The installed plugins called `names` (discovered as the host does, importing no other
    plugin); a name no entry point has is a `LookupError` listing the installed ones."""
    installed = _entry_points(group)
    missing = [name for name in names if name not in installed]
    if missing:
        raise LookupError(
            f"no installed plugin called {', '.join(missing)}"
            f" (installed: {', '.join(sorted(installed)) or 'none'})"
        )
    return from_entry_points(ep for name in names for ep in installed[name])


async def load_named(engine: Engine, names: Sequence[str]) -> None:
    """Load the installed plugins `names` into `engine`, in this order; a plugin that fails
    is a `RuntimeError` with its reason (a test kit or bench cannot go on without it)."""
    for item in discover_named(names):
        if await engine.loader.load(item) is None:
            status = engine.loader.statuses[item.name]
            raise RuntimeError(f"plugin {item.name} failed to {status.stage}: {status.error}")


@asynccontextmanager
async def open_store(
    plugin: str,
    settings: Mapping[str, Any] | None = None,
    *,
    data_dir: Path | None = None,
) -> AsyncIterator[DatabaseAdapter]:
    """The store of store plugin `plugin` (``inmemory``, ``sqlite``, ``postgres``, or any
    installed one providing ``database``) with `settings` as its ``plugins.<name>`` section,
    opened alone (found and built by `host.plugin_lookup`); closed on exit."""
    data: dict[str, Any] = {"plugins": {plugin: dict(settings or {})}}
    if data_dir is not None:
        data["data_dir"] = data_dir
    config = HostConfig.model_validate(data)
    async with open_service(construct(plugin, config), DATABASE) as db:
        yield db
