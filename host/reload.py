"""Hot plugin reload in dev mode: watch, drain, tear down, re-import, set up, or roll back.

`Reloader` watches each reloadable plugin's files with watchdog (its ``manifest.watch_paths``,
else its package directory; the builtin plugins only when asked). A burst of saves becomes one
reload after `debounce` seconds of quiet. Reloading plugin ``p`` reloads the group ``p`` and
the plugins depending on it (``manifest.dependencies``, or a constructor needing a service
``p`` provides), in dependency order:

1. purge the group's modules from ``sys.modules`` (kept aside, their bytecode caches deleted)
   and import the entry points again, while the old versions keep serving;
2. hold new messages (they wait, they do not fail) and wait for the ones in flight (up to
   `drain_timeout`);
3. unregister everything the old versions registered (services, model handlers, actions,
   providers, evaluators, event handlers, cache entries), dependents first, and tear them down;
4. construct each new version with injection, await its ``setup()``, register it; let the held
   messages in; emit ``plugin:reloaded`` with the duration.

If the new code fails to import (step 1), nothing has changed: the kept modules go back and the
old versions keep serving. If it fails to construct, set up or register (step 4), what was built
is torn down, the kept modules go back and the old versions are built again from them. Either
way the error (file and line) is logged and emitted as ``plugin:failed`` (stage ``reload``);
the next save tries again.

Packages, watch paths and the module purge live in `host.reload_modules` (``package_of`` and
``watch_paths`` are re-exported here).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from loguru import logger

from contracts.cache import CACHE
from contracts.config import ReloadSettings
from contracts.events import (
    PLUGIN_FAILED,
    PLUGIN_RELOADED,
    PluginFailedPayload,
    PluginReloadedPayload,
)
from contracts.memory import utc_now
from contracts.models import MODELS
from contracts.storage import DATABASE
from host.discovery import Discovered, NotAPlugin, read_manifest, where_raised
from host.loader import LoadedPlugin, Loader
from host.reload_modules import FileEvents, package_of, purge, restore, watch_paths

__all__ = ["Quiesce", "ReloadResult", "Reloader", "package_of", "watch_paths"]

_log = logger.bind(plugin="host")

HELD_BY_AGENTS = frozenset({DATABASE.name, MODELS.name, CACHE.name})
"""Services each agent resolves once, at start: a plugin binding one cannot be hot-reloaded
(the agents would keep the old, torn-down instance)."""

Quiesce = Callable[[float], AbstractAsyncContextManager[bool]]
"""Holds new work and waits (up to the given seconds) for the work in flight; yields whether
it all finished; lets the held work in on exit (the host's agents: `Host._quiesce`)."""


@dataclass(slots=True)
class ReloadResult:
    """What one reload did."""

    name: str
    ok: bool
    duration: float
    error: str | None = None
    reloaded: list[str] = field(default_factory=list)
    """The plugin and the dependents reloaded after it, in order (empty when it failed)."""
    at: datetime = field(default_factory=utc_now)
    """When it finished (UTC): the console and ``GET /plugins`` say how long ago."""


class _EditError(Exception):
    """What is wrong with an edited plugin as a whole (not at one line of its code); `origin`
    names the file of its entry point's module."""

    def __init__(self, message: str, target: str) -> None:
        super().__init__(message)
        module = sys.modules.get(target.partition(":")[0])
        file = getattr(module, "__file__", None)
        self.origin: dict[str, Any] = {"file": file} if file else {}


@asynccontextmanager
async def _no_quiesce(grace: float) -> AsyncIterator[bool]:
    yield True


class Reloader:
    """Watches plugin files and reloads plugins through a `Loader`."""

    def __init__(
        self,
        loader: Loader,
        settings: ReloadSettings | None = None,
        *,
        quiesce: Quiesce | None = None,
    ) -> None:
        settings = settings if settings is not None else ReloadSettings()
        self.loader = loader
        self.quiesce: Quiesce = quiesce or _no_quiesce
        self.debounce = settings.debounce
        self.drain_timeout = settings.drain_timeout
        self.watch_builtins = settings.watch_builtins
        self._observer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_path: dict[Path, set[str]] = {}
        self._directories: set[Path] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.history: list[ReloadResult] = []
        self._lost: dict[str, Discovered] = {}
        """Plugins a failed reload left unloaded (their old version did not load again either):
        the next save to their files, or a reload asked for by hand, loads them anew."""

    # watching -------------------------------------------------------------------------------

    def reloadable(self) -> list[str]:
        """Loaded plugins to watch: not opted out, not `refusal`-blocked, builtins only with
        `watch_builtins`."""
        names = []
        for name, loaded in self.loader.loaded.items():
            if self.refusal(name) is not None:
                continue
            if (
                package_of(loaded.discovered.target) == "builtin_plugins"
                and not self.watch_builtins
            ):
                continue
            names.append(name)
        return names

    @property
    def lost(self) -> list[str]:
        """Plugins a failed reload left unloaded (their old version failed to load again too);
        a save to their files or `reload` tries them again."""
        return list(self._lost)

    def watched(self) -> dict[Path, set[str]]:
        """The watched paths and the plugins each belongs to (after `start`)."""
        return {path: set(names) for path, names in self._by_path.items()}

    def start(self) -> None:
        """Start watching (from within the running event loop)."""
        from watchdog.observers import Observer  # dev mode only: not imported by every start

        self._loop = asyncio.get_running_loop()
        self._observer = Observer()
        for name in self.reloadable():
            self._watch(name)
        self._observer.start()
        for name in self.loader.loaded:
            refused = self.refusal(name)
            if refused is not None:
                _log.debug("dev mode: not watching plugin {}: {}", name, refused)
        _log.info(
            "dev mode: watching {} for plugin changes",
            ", ".join(sorted(map(str, self._by_path))) or "nothing",
        )

    def _watch(self, name: str) -> None:
        """Watch plugin `name`'s paths (again after a reload: its manifest may name others)."""
        for names in self._by_path.values():
            names.discard(name)
        item = self.loader.loaded[name].discovered
        for path in watch_paths(item, self._package(name)):
            self._by_path.setdefault(path.resolve(), set()).add(name)
            directory = path if path.is_dir() else path.parent
            if directory not in self._directories and directory.is_dir():
                self._observer.schedule(FileEvents(self._changed), str(directory), recursive=True)
                self._directories.add(directory)
        for path in [p for p, names in self._by_path.items() if not names]:
            del self._by_path[path]

    async def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 5)
            self._observer = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _changed(self, path: str) -> None:
        """Called on the watchdog thread: hand the path to the event loop, which owns
        `_by_path` (a reload re-watches, changing it while events arrive)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._route, Path(path).resolve())

    def _route(self, path: Path) -> None:
        """(Re)start the debounce timers of the plugins `path` belongs to."""
        for name in self._owners(path):
            self._schedule(name)

    def _owners(self, path: Path) -> set[str]:
        owners: set[str] = set()
        for root, names in self._by_path.items():
            if path == root or root in path.parents:
                owners |= names
        return owners

    def _schedule(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        assert self._loop is not None
        self._timers[name] = self._loop.call_later(self.debounce, self._fire, name)

    def _fire(self, name: str) -> None:
        """Reload `name` once its saves are quiet, unless a pending reload covers it (saves to
        a plugin and to one depending on it in the same burst make one reload)."""
        self._timers.pop(name, None)
        if name not in self.loader.loaded and name not in self._lost:
            return
        for pending in self._timers if name in self.loader.loaded else ():
            if pending in self.loader.loaded and name in self.group(pending):
                return  # that reload reloads `name` too
        for covered in self.group(name) if name in self.loader.loaded else ():
            timer = self._timers.pop(covered, None)
            if timer is not None:
                timer.cancel()
        task = asyncio.get_running_loop().create_task(self.reload(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # reloading ------------------------------------------------------------------------------

    async def reload(self, name: str) -> ReloadResult:
        """Reload plugin `name` and then its dependents; never raises for plugin errors."""
        async with self._lock:
            started = time.perf_counter()
            if name in self._lost:
                result = await self._revive(name, started)
                self.history.append(result)
                return result
            refused = self.refusal(name)
            if refused is not None:
                _log.error("cannot reload plugin {}: {}", name, refused)
                result = ReloadResult(name, False, 0.0, refused)
            else:
                result = await self._reload_group(name, started)
            self.history.append(result)
            return result

    async def _reload_group(self, name: str, started: float) -> ReloadResult:
        group = self.group(name)
        olds = [self.loader.loaded[plugin] for plugin in group]
        packages = [self._package(plugin) for plugin in group]
        kept = purge(packages)
        fresh: list[Discovered] = []
        available = set(self.loader.loaded) - set(group)
        try:
            for old in olds:  # dependents import the new modules of what they depend on
                item = self._rediscover(old.discovered)
                assert item.manifest is not None
                for dep in item.manifest.dependencies:
                    if dep not in available:
                        raise _EditError(
                            f"the new version depends on {dep}, which is not loaded", item.target
                        )
                fresh.append(item)
                available.add(item.name)
        except Exception as exc:
            restore(packages, kept)  # nothing else changed: the old versions kept serving
            failing = olds[len(fresh)].discovered
            error = await self._report(failing, exc)
            return ReloadResult(name, False, time.perf_counter() - started, error)

        failure: tuple[Discovered, Exception] | None = None
        finished: list[tuple[LoadedPlugin, float]] = []
        async with self.quiesce(self.drain_timeout) as drained:
            if not drained:
                _log.warning(
                    "plugin {}: messages still in flight after {}s; tearing down anyway",
                    name,
                    self.drain_timeout,
                )
            for old in reversed(olds):  # dependents first, as unloading does
                await self.loader.detach(old.name)
                await self.loader.teardown(old)
            for item in fresh:
                try:
                    new = await self.loader.prepare(item)
                except Exception as exc:
                    failure = (item, exc)
                    break
                try:
                    await self.loader.attach(new)
                except Exception as exc:
                    await self.loader.teardown(new)
                    failure = (item, exc)
                    break
                finished.append((new, time.perf_counter() - started))
            if failure is not None:
                await self._roll_back([new for new, _ in finished], olds, packages, kept)
        duration = time.perf_counter() - started
        if failure is not None:
            error = await self._report(*failure)
            return ReloadResult(name, False, duration, error)
        for new, took in finished:
            await self._announce(new, took, "reloaded")
        return ReloadResult(name, True, duration, None, [new.name for new, _ in finished])

    async def _announce(self, new: LoadedPlugin, took: float, how: str) -> None:
        """Log and emit ``plugin:reloaded`` for `new`, and watch its paths (its manifest may
        name others now)."""
        logger.bind(plugin=new.name).info("plugin {} {} in {:.0f} ms", new.name, how, took * 1000)
        if self.loader.events is not None:
            payload = PluginReloadedPayload(
                name=new.name, duration=took, version=new.manifest.version
            )
            await self.loader.events.emit(PLUGIN_RELOADED, payload)
        if self._observer is not None and new.name in self.reloadable():
            self._watch(new.name)

    async def _roll_back(
        self,
        built: list[LoadedPlugin],
        olds: list[LoadedPlugin],
        packages: list[str],
        kept: dict[str, ModuleType],
    ) -> None:
        """Remove the new versions built so far and build the old ones again from their kept
        modules (the whole group: an old dependent expects the old code it depends on)."""
        for new in reversed(built):
            await self.loader.detach(new.name)
            await self.loader.teardown(new)
        restore(packages, kept)
        for old in olds:
            if await self.loader.load(old.discovered) is None:
                self._lost[old.name] = old.discovered
                _log.error(
                    "plugin {}: its previous version failed to load again; it stays unloaded"
                    " until the next save to its files",
                    old.name,
                )

    async def _revive(self, name: str, started: float) -> ReloadResult:
        """Load plugin `name`, which a failed reload left unloaded, anew from its files; then
        the others it took down with it whose dependencies are all loaded again."""
        item = self._lost[name]
        others = [p.discovered.target for p in self.loader.loaded.values()]
        packages = [package_of(item.target, others)]
        kept = purge(packages)
        try:
            fresh = self._rediscover(item)
            assert fresh.manifest is not None
            missing = [d for d in fresh.manifest.dependencies if d not in self.loader.loaded]
            if missing:
                raise _EditError(f"it depends on {', '.join(missing)}, not loaded", item.target)
        except Exception as exc:
            restore(packages, kept)
            error = await self._report(item, exc, kept=False)
            return ReloadResult(name, False, time.perf_counter() - started, error)
        loaded = await self.loader.load(fresh)  # a failure is reported by the loader
        if loaded is None:
            status = self.loader.statuses.get(name)
            failure = status.error if status is not None else None
            return ReloadResult(name, False, time.perf_counter() - started, failure)
        del self._lost[name]
        await self._announce(loaded, time.perf_counter() - started, "loaded again")
        revived = [name]
        for other, lost in list(self._lost.items()):
            needs = lost.manifest.dependencies if lost.manifest is not None else ()
            ready = all(d in self.loader.loaded for d in needs)
            if ready and (await self._revive(other, time.perf_counter())).ok:
                revived.append(other)
        return ReloadResult(name, True, time.perf_counter() - started, None, revived)

    def refusal(self, name: str) -> str | None:
        """Why plugin `name` cannot be reloaded (not loaded, opted out, a dependent opted out,
        or it binds a service the agents hold), or None."""
        if name not in self.loader.loaded:
            return f"plugin {name} is not loaded"
        for plugin in self.group(name):
            manifest = self.loader.loaded[plugin].manifest
            if not manifest.reloadable:
                whose = "it" if plugin == name else f"its dependent {plugin}"
                return f"{whose} opts out of hot reload (manifest reloadable=False)"
            held = sorted(self._provides(plugin) & HELD_BY_AGENTS)
            if held:
                whose = "it" if plugin == name else f"its dependent {plugin}"
                return (
                    f"{whose} binds the service '{held[0]}', which running agents hold; "
                    "restart the host to load the change"
                )
        return None

    def group(self, name: str) -> list[str]:
        """`name` and the loaded plugins depending on it, directly or not, in load order: by
        ``manifest.dependencies`` or by a constructor needing a service the group provides (it
        holds the old instance of that service)."""
        group = [name]
        provided = self._provides(name)
        for plugin, loaded in self.loader.loaded.items():  # dict order is load order
            if plugin in group:
                continue
            if set(loaded.manifest.dependencies) & set(group) or provided & self._needs(loaded):
                group.append(plugin)
                provided |= self._provides(plugin)
        return group

    def _provides(self, name: str) -> set[str]:
        loaded = self.loader.loaded[name]
        tokens = {token.name for token in loaded.manifest.provides}
        try:
            tokens |= {service.token.name for service in loaded.instance.services()}
        except Exception as exc:
            _log.debug("plugin {}: services() raised {!r}", name, exc)
        return tokens

    def _needs(self, loaded: LoadedPlugin) -> set[str]:
        factory = loaded.discovered.factory
        if factory is None:
            return set()
        try:
            return {token.name for token in self.loader.container.requirements(factory)}
        except Exception:
            return set()

    def _package(self, name: str) -> str:
        target = self.loader.loaded[name].discovered.target
        others = [p.discovered.target for n, p in self.loader.loaded.items() if n != name]
        return package_of(target, others)

    def _rediscover(self, item: Discovered) -> Discovered:
        """Import the entry point again (from the purged modules) and read its manifest."""
        module_name, _, attribute = item.target.partition(":")
        module = importlib.import_module(module_name)
        factory: Any = module
        for part in attribute.split(".") if attribute else ():
            factory = getattr(factory, part)
        fresh = Discovered(item.name, item.target, item.distribution, item.version)
        try:
            fresh.manifest = read_manifest(factory, item.target, item.name, item.version)
        except NotAPlugin as exc:
            raise _EditError(f"after the edit, {exc}", item.target) from None
        fresh.factory = factory
        return fresh

    async def _report(self, item: Discovered, exc: Exception, *, kept: bool = True) -> str:
        """Log the failed reload of `item` with the file and line, emit ``plugin:failed``
        (`kept`: its previous version still serves)."""
        origin = exc.origin if isinstance(exc, _EditError) else where_raised(exc)
        where = f" ({origin['file']}:{origin['line']})" if origin.get("line") else ""
        if not where and origin.get("file"):
            where = f" ({origin['file']})"
        kind = "" if isinstance(exc, _EditError) else f"{type(exc).__name__}: "
        serving = self.loader.loaded.get(item.name)  # same settings as the failed version
        error = self.loader.scrub(f"{kind}{exc}{where}", serving.settings if serving else None)
        outcome = "the previous version keeps serving" if kept else "it stays unloaded"
        logger.bind(plugin=item.name).error(
            "reload of plugin {} failed, {}: {}", item.name, outcome, error
        )
        events = self.loader.events
        if events is not None:
            payload = PluginFailedPayload(
                name=item.name,
                stage="reload",
                error=error,
                file=origin.get("file"),
                line=origin.get("line"),
                distribution=item.distribution,
            )
            await events.emit(PLUGIN_FAILED, payload)
        return error
