"""Loading plugins: choose, order, construct with injection, set up, register; and unload.

Order: a plugin loads after the plugins it depends on (``manifest.dependencies``) and after the
plugins providing the services its constructor needs (``manifest.provides``); among plugins
free to load, higher priority first, then by name. A missing dependency or a cycle fails that
plugin and everything depending on it, with a message naming the chain; the rest load.

Loading one plugin: construct it (the container injects its ``__init__`` parameters, plus its
bound logger and its settings model validated from ``plugins.<name>``), await ``setup()`` (at
most ``plugins.setup_timeout`` seconds: one plugin's hung connection must not keep the host
from serving; a WARNING names it while it takes long), then
hand it to every `PluginRegistrar` (container, event bus, model registry, component registry)
in turn. A failure at any step undoes the steps before it, so a failed plugin leaves nothing
registered; it is reported (log and ``plugin:failed``) and the host goes on. Unloading runs the
same steps backwards; teardown failures (and teardowns past ``plugins.teardown_timeout``) are
logged and do not stop the others.

The choice and ordering functions live in `host.plugin_order`, the records (`LoadedPlugin`,
`PluginStatus`) in `host.plugin_records`; both are re-exported here.
"""

from __future__ import annotations

import asyncio
import graphlib
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from pydantic import BaseModel

from contracts.config import HostConfig
from contracts.events import (
    PLUGIN_FAILED,
    PLUGIN_LOADED,
    PLUGIN_UNLOADED,
    EventBusProtocol,
    PluginFailedPayload,
    PluginPayload,
)
from contracts.logging import LOGGER, Logger
from contracts.plugin import Manifest, Plugin
from contracts.services import MissingDependencyError
from host.config import ConfigError, LoadedConfig, plugin_settings
from host.di import Container
from host.di.plans import plan_for
from host.discovery import Discovered, where_raised
from host.logs import plugin_logger
from host.plugin_order import find_cycle, priority_order, select
from host.plugin_records import (
    LoadedPlugin,
    PluginRegistrar,
    PluginStatus,
    Stage,
    State,
    plugin_names,
)
from host.secrets import register, scrub, secret_values

__all__ = [
    "LoadedPlugin",
    "Loader",
    "PluginRegistrar",
    "PluginStatus",
    "Stage",
    "State",
    "plugin_names",
    "select",
]


class Loader:
    """Loads and unloads plugins into the host's registrars, keeping each plugin's status."""

    def __init__(
        self,
        container: Container,
        registrars: Sequence[PluginRegistrar],
        *,
        config: LoadedConfig,
        events: EventBusProtocol | None = None,
    ) -> None:
        self.container = container
        self.registrars = list(registrars)
        self.loaded_config = config
        register(secret_values(config.config))
        self.events = events
        self.loaded: dict[str, LoadedPlugin] = {}
        """Loaded plugins in load order."""
        self.statuses: dict[str, PluginStatus] = {}
        self.discovered: dict[str, Discovered] = {}
        self._duplicates: list[Discovered] = []
        self._service_cycles: dict[str, str] = {}
        """Plugin -> the cycle its constructor's needs would close (``b -> a -> b``)."""

    @property
    def config(self) -> HostConfig:
        return self.loaded_config.config

    # ordering --------------------------------------------------------------------------------

    def plan(self, discovered: Sequence[Discovered]) -> list[Discovered]:
        """Record every plugin's status and return the ones to load, in load order."""
        for item in discovered:
            if item.name in self.discovered and item.error is not None:
                # A duplicate name: the first plugin of that name stays; this one is listed
                # on a row of its own (keyed apart, so `statuses[name]` is the first one's).
                key = f"{item.name} ({item.distribution or item.target})"
                self._status(item, "failed", item.error, "discover", key=key)
                self._duplicates.append(item)
                continue
            self.discovered[item.name] = item
            self._status(item, "failed" if item.error else "disabled", item.error, "discover")
        chosen, _ = select(discovered, self.config, self.loaded_config)
        candidates = {
            name: self.discovered[name] for name in chosen if self.discovered[name].error is None
        }
        for item in candidates.values():
            assert item.manifest is not None
            self.container.declare_tokens(item.manifest.provides)
        providers: dict[str, list[str]] = {}
        for item in candidates.values():
            assert item.manifest is not None
            for token in item.manifest.provides:
                providers.setdefault(token.name, []).append(item.name)

        hard = {name: set(d.manifest.dependencies) for name, d in candidates.items() if d.manifest}
        self._fail_missing(hard, candidates)
        graph = {name: deps for name, deps in hard.items() if name in candidates}
        self._fail_cycles(graph, candidates)
        for name, item in candidates.items():  # soft edges: load after what provides my needs
            try:
                needs = self.container.requirements(item.factory) if item.factory else []
            except Exception:
                needs = []
            for token in needs:
                for provider in providers.get(token.name, ()):
                    if provider != name and provider in graph and name in graph:
                        graph[name].add(provider)
                        cycle = find_cycle(graph)
                        if cycle is not None:  # reported if it fails `name` (_provider_hints)
                            graph[name].discard(provider)
                            needs_order = cycle[:0:-1]  # graphlib lists dependencies first
                            at = needs_order.index(name)
                            ring = needs_order[at:] + needs_order[:at] + [name]
                            self._service_cycles[name] = " -> ".join(ring)
        order = priority_order(graph, candidates)
        return [candidates[name] for name in order]

    def _fail_missing(self, hard: dict[str, set[str]], candidates: dict[str, Discovered]) -> None:
        changed = True
        while changed:
            changed = False
            for name, deps in list(hard.items()):
                if name not in candidates:
                    continue
                for dep in sorted(deps):
                    if dep in candidates:
                        continue
                    if dep in self.statuses and self.statuses[dep].state == "failed":
                        why = f"depends on {dep}, which failed"
                    elif dep in self.discovered:
                        why = f"depends on {dep}, which is disabled in config"
                    else:
                        why = f"depends on {dep}, which is not installed"
                    self._fail(candidates.pop(name), why, "load")
                    changed = True
                    break

    def _fail_cycles(self, graph: dict[str, set[str]], candidates: dict[str, Discovered]) -> None:
        while True:
            try:
                graphlib.TopologicalSorter(graph).prepare()
                return
            except graphlib.CycleError as exc:
                cycle: list[str] = list(exc.args[1])
                chain = " -> ".join(cycle)
                failed = set(cycle)
                for name in dict.fromkeys(cycle):
                    if name in candidates:
                        self._fail(candidates.pop(name), f"dependency cycle: {chain}", "load")
                    graph.pop(name, None)
                # Dependents of the cycle, directly or not: a name left in a plugin's edges
                # after that plugin failed would reach the ordering as a plugin to load.
                changed = True
                while changed:
                    changed = False
                    for name, deps in list(graph.items()):
                        broken = deps & failed
                        if broken:
                            dep = sorted(broken)[0]
                            if name in candidates:
                                why = f"depends on {dep}, which failed"
                                self._fail(candidates.pop(name), why, "load")
                            graph.pop(name)
                            failed.add(name)
                            changed = True

    # loading ---------------------------------------------------------------------------------

    async def load_all(self, discovered: Sequence[Discovered]) -> list[PluginStatus]:
        """Load every chosen plugin in order; returns every plugin's status."""
        with self.container.announcing_once():
            for item in self.plan(discovered):
                blocked = self._blocked_by(item)
                if blocked is not None:
                    self._fail(item, f"depends on {blocked}, which failed", "load")
                    continue
                await self.load(item)
        return list(self.statuses.values())

    def _blocked_by(self, item: Discovered) -> str | None:
        assert item.manifest is not None
        for dep in item.manifest.dependencies:
            if dep not in self.loaded:
                return dep
        return None

    async def load(self, item: Discovered) -> LoadedPlugin | None:
        """Construct, set up and register one plugin; None (and reported) if it failed."""
        started = time.perf_counter()
        stage: Stage = "load"
        loaded: LoadedPlugin | None = None
        try:
            loaded = await self._construct(item)
            stage = "setup"
            await self._set_up(loaded)
            stage = "load"
            await self.attach(loaded)
        except Exception as exc:
            if stage == "load" and loaded is not None:
                await self._teardown_instance(item.name, loaded.instance)
            item.origin = where_raised(exc)
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if isinstance(exc, ConfigError):
                error = str(exc)
            elif isinstance(exc, MissingDependencyError):
                error += self._provider_hints(item)
            settings = loaded.settings if loaded is not None else None
            await self._report_failure(item, self.scrub(error, settings), stage)
            return None
        loaded.load_seconds = time.perf_counter() - started
        plugin_logger(item.name).debug(
            "plugin {} {} loaded in {:.1f} ms",
            item.name,
            loaded.manifest.version,
            1000 * loaded.load_seconds,
        )
        await self._emit_loaded(PLUGIN_LOADED, loaded)
        return loaded

    async def prepare(self, item: Discovered) -> LoadedPlugin:
        """Construct and set up `item` without registering it (hot reload `attach`es it
        then). Raises what construction or setup raised."""
        loaded = await self._construct(item)
        await self._set_up(loaded)
        return loaded

    async def _set_up(self, loaded: LoadedPlugin) -> None:
        """Await the plugin's ``setup()``. If it raises, what it registered under the plugin's
        name before raising (``bus.on(..., owner=name)``, as the audit plugin subscribes) is
        removed from every registrar: a failed plugin leaves nothing registered, and a failed
        reload's rollback would otherwise run the broken version's handlers beside the old."""
        try:
            await self._bounded(
                loaded.name, "setup", _setup(loaded.instance), self.config.plugins.setup_timeout
            )
        except Exception:
            await self._unregister_everywhere(loaded.name)
            raise

    async def _bounded(
        self, name: str, step: str, work: Coroutine[Any, Any, None], limit: float
    ) -> None:
        """Run a plugin's `step` (``setup``, ``teardown``) for at most `limit` seconds, in a
        task of its own: past the limit it is cancelled and `PluginStepTimeout` raised; one
        that ignores its cancellation (a retry loop catching everything) is given `GRACE`
        seconds more, then left running, logged, so that the host still goes on. A step still
        running after `SLOW_STEP` seconds (or a quarter of the limit, if less) gets a WARNING
        naming the plugin, and one that held the loop that long without awaiting, one after
        it returns."""
        log = plugin_logger(name)
        started = time.perf_counter()
        after = min(SLOW_STEP, limit / 4)
        warned: list[bool] = []

        def still_running() -> None:
            if task.done():  # it ended while holding the loop: said once it returns
                return
            warned.append(True)
            log.warning(
                "plugin {} {} still running after {:g} s (limit {:g} s: plugins.{}_timeout)",
                *(name, step, after, limit, step),
            )

        loop = asyncio.get_running_loop()
        waiting = loop.call_later(after, still_running)
        task = loop.create_task(work, name=f"plugin {name} {step}")
        try:
            done, _ = await asyncio.wait({task}, timeout=limit)
            if not done:
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=GRACE)
                if done:
                    _forget(task)  # however it ended once cancelled, it is past its limit
                else:  # it swallowed its cancellation: left behind, not awaited
                    _ABANDONED.add(task)
                    task.add_done_callback(_forget)
                    log.error(
                        "plugin {} {} ignored its cancellation; left running in the background",
                        name,
                        step,
                    )
                raise PluginStepTimeout(
                    f"{step}() did not finish within {limit:g} s (plugins.{step}_timeout)"
                )
            task.result()  # its own outcome: an error of its own (a TimeoutError too) raises
        except asyncio.CancelledError:  # the host's start or stop was cancelled meanwhile
            task.cancel()
            raise
        finally:
            waiting.cancel()
            took = time.perf_counter() - started
            if took >= after and not warned:  # it held the loop: the timer could not fire
                log.warning("plugin {} {} held the event loop for {:.1f} s", name, step, took)

    async def _unregister_everywhere(self, name: str) -> None:
        for registrar in reversed(self.registrars):
            await self._quietly(registrar.unregister_plugin(name), name)
        await self.container.aunregister_owner(name)

    async def _construct(self, item: Discovered) -> LoadedPlugin:
        """Construct `item` with injection, its bound logger and validated settings besides
        the container's services (not set up yet)."""
        manifest = item.manifest
        assert manifest is not None and item.factory is not None
        settings = self._settings(manifest)
        extras = _own_extras(item.name, manifest, settings)
        instance = await self.container.construct(item.factory, owner=item.name, extras=extras)
        return LoadedPlugin(manifest, instance, item, settings)

    async def construct_again(self, name: str, extras: dict[Any, object]) -> Plugin:
        """A new instance of loaded plugin `name`, built as the loader built it (its settings
        and bound logger, the container's services) but with `extras` (by token or type)
        taking precedence, and set up (within ``plugins.setup_timeout``): the plugin as it
        would be on another service, e.g. the components an ``events replay`` runs on its own
        memory store and bus. Not registered; `release_again` tears it down. Raises what its
        construction or setup raised."""
        loaded = self.loaded[name]
        factory = loaded.discovered.factory
        assert factory is not None
        given = _own_extras(name, loaded.manifest, loaded.settings)
        instance: Plugin = await self.container.construct(
            factory, owner=name, extras={**given, **extras}
        )
        await self._bounded(name, "setup", _setup(instance), self.config.plugins.setup_timeout)
        return instance

    async def release_again(self, name: str, instance: Plugin) -> None:
        """Tear down an instance of plugin `name` that `construct_again` built (within
        ``plugins.teardown_timeout``); a failure is logged, not raised: the loaded plugin is
        not concerned."""
        await self._teardown_instance(name, instance, again=True)

    async def detach(self, name: str) -> LoadedPlugin:
        """Remove everything plugin `name` registered from every registrar (reverse order) and
        wait until the services built from its bindings are torn down. The instance (returned)
        is still set up: hot reload tears it down, then `attach`es the next version."""
        loaded = self.loaded.pop(name)
        await self._unregister_everywhere(name)
        return loaded

    async def attach(self, loaded: LoadedPlugin) -> None:
        """Register a constructed, set-up plugin (`load`'s, or hot reload's `prepare`d one) in
        every registrar, all or nothing, and record it as loaded. Raises what a registrar
        raised (nothing of it stays registered then)."""
        name = loaded.name
        try:
            for registrar in self.registrars:
                await _maybe_await(registrar.register_plugin(loaded))
        except Exception:
            # Every registrar, also those not reached: setup() may have registered in them.
            await self._unregister_everywhere(name)
            raise
        self.loaded[name] = loaded
        self.discovered[name] = loaded.discovered
        self._status(loaded.discovered, "loaded")

    async def teardown(self, loaded: LoadedPlugin) -> None:
        """Tear down a plugin instance that is no longer registered (a replaced version)."""
        await self._teardown_instance(loaded.name, loaded.instance)

    def _provider_hints(self, item: Discovered) -> str:
        """Why plugins meant to provide what `item`'s constructor needs did not: they failed,
        are disabled, or need `item`'s own services (a cycle between plugins)."""
        hints: list[str] = []
        assert item.factory is not None
        for param in plan_for(item.factory).params:
            if param.optional or param.has_default:
                continue
            token = param.token or self.container.token_for(param.annotation)
            if token is not None and self.container.has(token):
                continue
            for name, other in self.discovered.items():
                provided = [
                    t
                    for t in (other.manifest.provides if other.manifest is not None else ())
                    if (t.name == token.name if token is not None else t.type == param.annotation)
                ]
                if not provided:
                    continue
                cycle = self._service_cycles.get(item.name, "")
                state = self.statuses[name].state if name in self.statuses else "failed"
                if name == item.name:
                    why = "itself: its services are bound only once it is constructed"
                elif name in cycle.split(" -> "):
                    why = f"which needs {item.name}'s services in turn ({cycle})"
                elif state == "disabled":
                    why = "which is disabled in config"
                else:
                    why = "which failed" if state == "failed" else "which is not loaded"
                hints.append(f"; '{provided[0].name}' comes from plugin {name}, {why}")
        return "".join(hints)

    def scrub(self, text: str, settings: BaseModel | None = None) -> str:
        """`text` with the configured secrets (and those of a plugin's `settings`) masked. A
        failure's text is kept in the plugin's status (``plugins list``, ``GET /plugins``) and
        emitted as ``plugin:failed`` (recorded by the audit trail), past the log scrubbing; an
        error quoting the DSN a plugin failed to reach must not carry its password there."""
        if settings is not None:
            register(secret_values(settings))
        return scrub(text)

    def _settings(self, manifest: Manifest) -> BaseModel | None:
        """The plugin's validated settings; their `SecretStr` values join the secrets masked
        at every exit (the raw section was only masked by key name)."""
        if manifest.settings is None:
            if self.config.plugins.section(manifest.name):
                key = f"plugins.{manifest.name}"
                source = self.loaded_config.source_of(key) if self.loaded_config else "config"
                plugin_logger(manifest.name).warning(
                    "config {} (from {}): plugin {} declares no settings, this section is unused",
                    key,
                    source.partition(":")[2] or source,
                    manifest.name,
                )
            return None
        settings = plugin_settings(
            manifest.settings, manifest.name, self.config, self.loaded_config
        )
        register(secret_values(settings))
        return settings

    async def unload(self, name: str) -> None:
        """Unregister plugin `name` from every registrar (reverse order), wait until the
        services built from its bindings are torn down, then tear it down. Waiting matters: an
        async tear-down left in the background ran after the plugins it uses were torn down."""
        loaded = self.loaded.pop(name, None)
        if loaded is None:
            return
        await self._unregister_everywhere(name)
        await self._teardown_instance(name, loaded.instance)
        self.statuses[name].state = "disabled"
        plugin_logger(name).debug("plugin {} unloaded", name)
        await self._emit_loaded(PLUGIN_UNLOADED, loaded)

    async def unload_all(self) -> None:
        """Unload every plugin in reverse load order; a failing teardown does not stop the rest."""
        for name in reversed(list(self.loaded)):
            await self.unload(name)

    async def _teardown_instance(self, name: str, instance: Any, *, again: bool = False) -> None:
        """Tear `instance` down; a failure is logged and, unless it is an instance built
        `again` (`construct_again`: the loaded plugin is not concerned), reported."""
        teardown = getattr(instance, "teardown", None)
        if not callable(teardown):
            return
        try:
            await self._bounded(
                name, "teardown", _call(teardown), self.config.plugins.teardown_timeout
            )
        except Exception as exc:
            trace = None if isinstance(exc, PluginStepTimeout) else exc
            plugin_logger(name).opt(exception=trace).error(
                "plugin {} teardown{} failed: {}",
                name,
                " (of an instance built again)" if again else "",
                exc,
            )
            if not again:
                await self._emit_failed(name, f"{type(exc).__name__}: {exc}", "teardown")

    async def _quietly(self, result: Awaitable[None] | None, name: str) -> None:
        try:
            await _maybe_await(result)
        except Exception as exc:
            plugin_logger(name).opt(exception=exc).error("unregistering plugin {} failed", name)

    # reporting -------------------------------------------------------------------------------

    def _status(
        self,
        item: Discovered,
        state: State,
        error: str | None = None,
        stage: Stage | None = None,
        *,
        key: str | None = None,
    ) -> None:
        self.statuses[key or item.name] = PluginStatus(
            item.name,
            item.manifest.version if item.manifest else item.version,
            item.distribution,
            state,
            scrub(error) if error else None,  # shown by GET /plugins and plugins list
            stage if error else None,
            item.manifest.description if item.manifest else "",
        )

    def _fail(self, item: Discovered, error: str, stage: Stage) -> None:
        self._status(item, "failed", error, stage)
        plugin_logger(item.name).error(
            "plugin {} (distribution {}) failed to {}: {}",
            item.name,
            item.distribution or "unknown",
            stage,
            error,
        )

    async def _report_failure(self, item: Discovered, error: str, stage: Stage) -> None:
        self._fail(item, error, stage)
        await self._emit_failed(item.name, error, stage, item)

    async def _emit_failed(
        self, name: str, error: str, stage: Stage, item: Discovered | None = None
    ) -> None:
        if self.events is None:
            return
        origin = item.origin if item is not None else {}
        payload = PluginFailedPayload(
            name=name,
            stage=stage,
            error=scrub(error),
            file=origin.get("file"),
            line=origin.get("line"),
            distribution=item.distribution if item is not None else None,
        )
        await self.events.emit(PLUGIN_FAILED, payload)

    async def _emit_loaded(self, event: Any, loaded: LoadedPlugin) -> None:
        if self.events is None:
            return
        payload = PluginPayload(
            name=loaded.name,
            version=loaded.manifest.version,
            distribution=loaded.discovered.distribution,
        )
        await self.events.emit(event, payload)

    async def report_discovery(self) -> None:
        """Emit ``plugin:failed`` for the plugins discovery could not use."""
        for item in [*self.discovered.values(), *self._duplicates]:
            if item.error is not None:
                await self._emit_failed(item.name, item.error, "discover", item)


SLOW_STEP = 5.0
"""Seconds after which a plugin's setup or teardown still running is logged (WARNING)."""
GRACE = 1.0
"""Seconds a plugin's setup or teardown past its limit gets to end once cancelled."""
_ABANDONED: set[asyncio.Task[None]] = set()
"""Steps that ignored their cancellation, kept referenced until they end (`_forget`)."""


def _own_extras(name: str, manifest: Manifest, settings: BaseModel | None) -> dict[Any, object]:
    """What the loader gives plugin `name`'s constructor besides the container's services: its
    bound logger and its validated settings."""
    log = plugin_logger(name)
    extras: dict[Any, object] = {Logger: log, LOGGER: log}
    if manifest.settings is not None and settings is not None:
        extras[manifest.settings] = settings
    return extras


def _forget(task: asyncio.Task[None]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: asyncio would log it as never retrieved


class PluginStepTimeout(TimeoutError):
    """A plugin's ``setup()`` or ``teardown()`` ran past its limit (and was cancelled)."""


async def _call(step: Callable[[], Any]) -> None:
    """`step()`, awaited if it gives an awaitable (a plugin's sync or async teardown)."""
    await _maybe_await(step())


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _setup(instance: Any) -> None:
    """Await the plugin's ``setup()``, if it has one (sync or async)."""
    setup = getattr(instance, "setup", None)
    if callable(setup):
        await _maybe_await(setup())
