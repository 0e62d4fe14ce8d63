"""`Host`: the engine assembled from the configuration.

It owns the app scope's services (settings, event bus, model registry, provider cache,
metrics), discovers and loads the plugins through the registrars that each keep what a plugin
registers (container, bus, models, components), starts the configured agents, and, when asked,
the HTTP API. ``stop`` undoes it all in reverse: agents, HTTP, plugins (teardown in reverse load
order), then the app scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from loguru import logger

from contracts.config import HostConfig
from contracts.errors import AgentHostError
from contracts.events import (
    PLUGIN_FAILED,
    PLUGIN_LOADED,
    PLUGIN_RELOADED,
    PLUGIN_UNLOADED,
    PluginFailedPayload,
    PluginPayload,
    PluginReloadedPayload,
)
from host import character_knowledge, heap, tracing
from host.agents import AgentManager
from host.assembly import Engine, agent_manager, assemble, http_app
from host.blocking import LoopMonitor
from host.characters import configured_characters
from host.config import LoadedConfig, load_config
from host.console import mount_console
from host.discovery import Discovered, discover
from host.embeddings import check_embeddings
from host.http import HttpServer, mount_host_routes
from host.loader import PluginStatus
from host.metrics.events import EventMetrics
from host.metrics.sampler import bus_source, cache_source
from host.metrics.telemetry import Telemetry
from host.secrets import register
from host.stores import check_stores

if TYPE_CHECKING:
    from host.cluster.node import ClusterNode
    from host.reload import Reloader, ReloadResult

__all__ = ["Host"]

_log = logger.bind(plugin="host")


class Host:
    """One agenthost process: plugins, agents and (optionally) the HTTP API."""

    def __init__(
        self,
        config: LoadedConfig | HostConfig | None = None,
        *,
        discovered: Sequence[Discovered] | None = None,
    ) -> None:
        if config is None:
            config = load_config()
        if isinstance(config, HostConfig):
            config = LoadedConfig(config, None)
        self.loaded_config = config
        settings = config.config
        self.engine: Engine = assemble(config)
        engine = self.engine
        self.events = engine.events
        self.models = engine.models
        self.cache = engine.cache
        self.telemetry: Telemetry = engine.telemetry
        self.components = engine.components
        self.container = engine.container
        self.loader = engine.loader
        self._discovered = discovered
        self.reloader: Reloader | None = None
        """Set in dev mode (``dev: true`` / ``agenthost run --dev``): watches plugin files."""
        self.agents: AgentManager | None = None
        self.http: HttpServer | None = None
        self.monitor: LoopMonitor | None = None
        """Reports callbacks holding the event loop (config ``loop_monitor``)."""
        self.cluster: ClusterNode | None = None
        """Cluster mode (``cluster.enabled``): the queue, worker and/or API dispatch."""
        if settings.cluster.enabled:
            from host.cluster.node import ClusterNode

            self.cluster = ClusterNode(settings)
        self._started = False
        self._frozen = False

    @property
    def config(self) -> HostConfig:
        return self.loaded_config.config

    @property
    def statuses(self) -> list[PluginStatus]:
        return sorted(self.loader.statuses.values(), key=lambda s: s.name)

    async def start(self, *, agents: bool = True, http: bool = False) -> None:
        """Load plugins, then start agents (and the HTTP API on ``http.host:http.port``)."""
        if self._started:
            return
        self._started = True
        tracing.subscribe(self.events)  # model call spans, when a tracer provider is set
        if self.config.metrics.enabled:
            EventMetrics(self.telemetry.internal).subscribe(self.events, owner="host")
            counters, gauges = cache_source(self.cache)
            self.telemetry.sampler.add("host", counters, kind="counter")
            self.telemetry.sampler.add("host", gauges)
            self.telemetry.sampler.add("host", bus_source(self.events), kind="counter")
            self.telemetry.start()

        found = list(self._discovered) if self._discovered is not None else discover()
        await self.loader.load_all(found)
        await self.loader.report_discovery()
        for problem in self.container.validate():
            _log.error("service wiring: {}", problem)
        if self.config.metrics.enabled:
            self._sample_plugins()
        loaded = [s.name for s in self.statuses if s.state == "loaded"]
        failed = [s.name for s in self.statuses if s.state == "failed"]
        _log.info(
            "plugins loaded: {}{}",
            ", ".join(loaded) or "none",
            f"; failed: {', '.join(failed)}" if failed else "",
        )
        if agents:  # `plugins list` (no agents) still lists a failed store with its error
            loader = self.loader
            bindings = self.container.bindings()
            check_stores(self.config.services, loader.statuses, loader.discovered, bindings)
            if self.cluster is not None:
                await self.cluster.open()
            await self._start_agents()
            if self.cluster is not None:
                assert self.agents is not None
                sampler = self.telemetry.sampler if self.config.metrics.enabled else None
                await self.cluster.start(self.agents, self.events, self.cache, sampler)
        if self.config.loop_monitor.enabled:  # after start-up's imports and file opening
            self.monitor = LoopMonitor(self.config.loop_monitor)
            self.monitor.start()
        if self.config.dev:
            from host.reload import Reloader  # dev mode only (watchdog)

            self.reloader = Reloader(self.loader, self.config.reload, quiesce=self._quiesce)
            self.reloader.start()
        if http and self.config.http.enabled:
            await self.start_http()
        if self.config.gc_freeze and not self.config.dev:  # out of the GC's walks (host/heap.py)
            heap.freeze()
            self._frozen = True

    @asynccontextmanager
    async def _quiesce(self, grace: float) -> AsyncIterator[bool]:
        """Hold every agent's new messages and wait (up to `grace` s) for those in progress and
        for detached event handlers; yields whether all finished; lets the held messages in on
        exit (hot reload swaps a plugin inside: new work waits for it instead of failing)."""
        runtimes = list(self.agents.running) if self.agents is not None else []
        for runtime in runtimes:
            runtime.hold()
        try:
            started = asyncio.get_running_loop().time()
            drained = await asyncio.gather(*(runtime.drain(grace) for runtime in runtimes))
            left = max(0.0, grace - (asyncio.get_running_loop().time() - started))
            handlers = await self.events.drain(left)  # detached handlers (of the plugin too)
            yield all(drained) and handlers
        finally:
            for runtime in runtimes:
                runtime.release()

    async def reload_plugin(self, name: str) -> ReloadResult:
        """Reload plugin `name` now (dev mode; also what a file change triggers)."""
        if self.reloader is None:
            raise AgentHostError("plugin reload needs dev mode (dev: true or agenthost run --dev)")
        return await self.reloader.reload(name)

    def _sample_plugins(self) -> None:
        """Sample plugins' own figures: a plugin may define ``metric_counters()`` (cumulative
        values, e.g. events appended) and ``metric_gauges()`` (current values, e.g. its
        connection pool), each returning ``{metric name: value}``."""
        for name in self.loader.loaded:
            self._sample_plugin(name)
        self.events.on(PLUGIN_RELOADED, self._resample_plugin, owner="host")
        self.events.on(PLUGIN_LOADED, self._resample_plugin, owner="host")
        self.events.on(PLUGIN_FAILED, self._resample_plugin, owner="host")
        self.events.on(PLUGIN_UNLOADED, self._resample_plugin, owner="host")

    def _sample_plugin(self, name: str) -> None:
        instance = self.loader.loaded[name].instance
        for method, kind in (("metric_counters", "counter"), ("metric_gauges", "gauge")):
            read = getattr(instance, method, None)
            if callable(read):
                self.telemetry.sampler.add(name, read, kind=kind)  # type: ignore[arg-type]

    def _resample_plugin(
        self, payload: PluginPayload | PluginReloadedPayload | PluginFailedPayload
    ) -> None:
        """A reloaded plugin's figures come from its new instance (the old one is torn down);
        so do those of a plugin loaded again (a failed reload builds the old version anew); a
        plugin unloaded, or whose old version failed to come back, is sampled no more."""
        self.telemetry.sampler.remove(payload.name)
        if payload.name in self.loader.loaded:
            self._sample_plugin(payload.name)

    async def _start_agents(self) -> None:
        settings = self.config.agents
        characters = configured_characters(settings)
        # characters' secrets (ElizaOS settings.secrets) are masked like config secrets
        register(s for c in characters for s in c.secrets.values())
        self.agents = agent_manager(
            self.engine,
            characters,
            embeddings=await check_embeddings(self.container) if settings.embed else None,
            hooks=self._cluster_hooks(),
        )
        character_knowledge.subscribe(
            self.events, self.container, self.agents, settings.characters_dir
        )
        await self.agents.start_all(settings.start)

    def _cluster_hooks(self) -> dict[str, Any]:
        if self.cluster is None:
            return {}
        return {"wrap_database": self.cluster.wrap_database, "ids": self.cluster.unit_ids}

    async def start_http(self) -> HttpServer:
        """Serve the HTTP API (and ``/metrics``) until `stop`."""
        if self.agents is None:
            raise RuntimeError("start the agents before the HTTP API")
        dispatch = self.cluster.dispatch if self.cluster is not None else None
        app = http_app(self.engine, self.agents, dispatch)
        if self.cluster is not None:
            self.cluster.mount(app)
        mount_host_routes(app, self)
        mount_console(app, self)
        self.http = HttpServer(app, host=self.config.http.host, port=self.config.http.port)
        await self.http.start()
        _log.info("HTTP API on {} (OpenAPI at /docs, web console at /)", self.http.url)
        return self.http

    async def stop(self) -> None:
        """Stop everything started, in reverse; each step runs even if an earlier one failed."""
        if not self._started:
            return
        self._started = False
        steps = []
        if self.reloader is not None:
            steps.append(("plugin watcher", self.reloader.stop()))
        if self.cluster is not None:  # the worker finishes its messages, releases its rooms
            steps.append(("cluster worker", self.cluster.drain()))
        if self.http is not None:
            steps.append(("HTTP API", self.http.stop()))
        if self.cluster is not None:
            steps.append(("cluster", self.cluster.close()))
        if self.agents is not None:
            steps.append(("agents", self.agents.stop_all()))
        # Detached event handlers finish (or are cancelled) while their plugins are still set
        # up; events emitted from here on (plugin:unloaded) run their handlers inline.
        steps.append(("event bus", self.events.aclose()))
        for name, step in steps:
            try:
                await step
            except Exception as exc:
                _log.opt(exception=exc).error("stopping {} failed: {}", name, exc)
        await self.loader.unload_all()
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        for name, close in (
            ("services", self.container.aclose()),
            ("metrics", self.telemetry.aclose()),
        ):
            try:
                await close
            except Exception as exc:
                _log.opt(exception=exc).error("closing {} failed: {}", name, exc)
        if self._frozen:
            self._frozen = False
            heap.thaw()

    async def __aenter__(self) -> Host:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Start with the HTTP API and serve until `stop` is set (signals set it in the CLI)."""
        stop = stop or asyncio.Event()
        try:  # a start failing half-way (the port taken) still tears down what it started
            await self.start(http=True)
            await stop.wait()
        finally:
            await self.stop()
