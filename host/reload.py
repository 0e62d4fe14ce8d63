"""Hot plugin reload in dev mode: watch, re-import, swap, or roll back.

`Reloader` watches each reloadable plugin's files with watchdog (its ``manifest.watch_paths``,
else its package directory; the builtin plugins only when asked). A burst of saves becomes one
reload after `debounce` seconds of quiet. Reloading plugin ``p``:

1. purge ``p``'s modules from ``sys.modules`` (kept aside) and import its entry point again;
2. construct the new version with injection and await its ``setup()``, next to the old one;
3. swap the registrations (services, model handlers, actions, providers, evaluators, event
   handlers, cache policies) in one step, so no request finds the plugin missing;
4. wait for the messages in flight to finish (up to `drain_timeout`), then tear the old
   instance down; emit ``plugin:reloaded`` with the duration;
5. reload the plugins that depend on ``p``, in dependency order.

If importing, constructing or setting up the new code fails, the kept modules go back into
``sys.modules``, the old version keeps serving, and the error (file and line) is logged and
emitted as ``plugin:failed``; the next save tries again.

Why build before removing instead of "stop routing, drain, teardown, re-register": the old
version serves until the new one is ready, so a broken edit costs nothing and nothing waits.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from loguru import logger
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from contracts.events import (
    PLUGIN_FAILED,
    PLUGIN_RELOADED,
    PluginFailedPayload,
    PluginReloadedPayload,
)
from host.discovery import Discovered, where_raised
from host.loader import Loader

__all__ = ["ReloadResult", "Reloader", "package_of", "watch_paths"]

_log = logger.bind(plugin="host")
WATCHED_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".toml")


@dataclass(slots=True)
class ReloadResult:
    """What one reload did."""

    name: str
    ok: bool
    duration: float
    error: str | None = None
    reloaded: list[str] = field(default_factory=list)
    """The plugin and the dependents reloaded after it, in order."""


def package_of(target: str) -> str:
    """The top-level package of an entry point value: ``weather.plugin:Cls`` -> ``weather``."""
    return target.partition(":")[0].split(".")[0]


def watch_paths(item: Discovered) -> list[Path]:
    """The manifest's watch paths (relative ones against the package), else the package dir."""
    module = sys.modules.get(package_of(item.target))
    base: Path | None = None
    if module is not None:
        locations = getattr(module, "__path__", None)
        if locations:
            base = Path(next(iter(locations)))
        elif getattr(module, "__file__", None):
            base = Path(str(module.__file__)).parent
    manifest = item.manifest
    if manifest is not None and manifest.watch_paths:
        return [Path(p) if Path(p).is_absolute() or base is None else base / p
                for p in manifest.watch_paths]  # fmt: skip
    return [base] if base is not None else []


def _purge(package: str) -> dict[str, ModuleType]:
    taken = {
        name: module
        for name, module in sys.modules.items()
        if name == package or name.startswith(package + ".")
    }
    for name in taken:
        del sys.modules[name]
    return taken


class _Events(FileSystemEventHandler):
    def __init__(self, callback: Callable[[str], None]) -> None:
        self.callback = callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("modified", "created", "moved", "deleted"):
            return
        path = str(getattr(event, "dest_path", "") or event.src_path)
        if path.endswith(WATCHED_SUFFIXES):
            self.callback(path)


class Reloader:
    """Watches plugin files and reloads plugins through a `Loader`."""

    def __init__(
        self,
        loader: Loader,
        *,
        drain: Callable[[float], Awaitable[bool]] | None = None,
        debounce: float = 0.1,
        drain_timeout: float = 10.0,
        watch_builtins: bool = False,
    ) -> None:
        self.loader = loader
        self.drain = drain
        """Waits for the host's in-flight messages (the agents' ``drain``)."""
        self.debounce = debounce
        self.drain_timeout = drain_timeout
        self.watch_builtins = watch_builtins
        self._observer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_path: dict[Path, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.history: list[ReloadResult] = []

    # watching -------------------------------------------------------------------------------

    def reloadable(self) -> list[str]:
        """Loaded plugins that may be reloaded (builtins only with `watch_builtins`)."""
        names = []
        for name, loaded in self.loader.loaded.items():
            if not loaded.manifest.reloadable:
                continue
            if (
                package_of(loaded.discovered.target) == "builtin_plugins"
                and not self.watch_builtins
            ):
                continue
            names.append(name)
        return names

    def start(self) -> None:
        """Start watching (from within the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._observer = Observer()
        watched: set[Path] = set()
        for name in self.reloadable():
            for path in watch_paths(self.loader.loaded[name].discovered):
                self._by_path[path.resolve()] = name
                directory = path if path.is_dir() else path.parent
                if directory not in watched:
                    self._observer.schedule(_Events(self._changed), str(directory), recursive=True)
                    watched.add(directory)
        self._observer.start()
        _log.info(
            "dev mode: watching {} for plugin changes", ", ".join(map(str, watched)) or "nothing"
        )

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
        """Called on the watchdog thread: find the plugin, (re)start its debounce timer."""
        name = self._owner(Path(path).resolve())
        if name is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._schedule, name)

    def _owner(self, path: Path) -> str | None:
        for root, name in self._by_path.items():
            if path == root or root in path.parents:
                return name
        return None

    def _schedule(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        assert self._loop is not None
        self._timers[name] = self._loop.call_later(self.debounce, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        task = asyncio.get_running_loop().create_task(self.reload(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # reloading ------------------------------------------------------------------------------

    async def reload(self, name: str) -> ReloadResult:
        """Reload plugin `name` and then its dependents; never raises for plugin errors."""
        async with self._lock:
            started = time.perf_counter()
            if name not in self.loader.loaded:
                result = ReloadResult(name, False, 0.0, f"plugin {name} is not loaded")
                self.history.append(result)
                return result
            order = [name, *self._dependents(name)]
            done: list[str] = []
            error: str | None = None
            for plugin in order:
                error = await self._reload_one(plugin)
                if error is not None:
                    break
                done.append(plugin)
            result = ReloadResult(name, error is None, time.perf_counter() - started, error, done)
            self.history.append(result)
            return result

    def _dependents(self, name: str) -> list[str]:
        """Loaded plugins depending on `name`, directly or not, in load (dependency) order."""
        affected = {name}
        ordered: list[str] = []
        for plugin, loaded in self.loader.loaded.items():  # dict order is load order
            if affected & set(loaded.manifest.dependencies):
                affected.add(plugin)
                ordered.append(plugin)
        return ordered

    async def _reload_one(self, name: str) -> str | None:
        started = time.perf_counter()
        old = self.loader.loaded[name]
        item = old.discovered
        package = package_of(item.target)
        kept = _purge(package)
        importlib.invalidate_caches()
        try:
            fresh = self._rediscover(item)
            new = await self.loader.prepare(fresh)
        except Exception as exc:
            for module_name in [
                m for m in sys.modules if m == package or m.startswith(package + ".")
            ]:
                del sys.modules[module_name]
            sys.modules.update(kept)
            origin = where_raised(exc)
            where = f" ({origin['file']}:{origin['line']})" if origin else ""
            error = f"{type(exc).__name__}: {exc}{where}"
            logger.bind(plugin=name).error(
                "reload of plugin {} failed, the previous version keeps serving: {}", name, error
            )
            await self._emit_failed(name, error, origin, item.distribution)
            return error
        await self.loader.replace(new)
        if self.drain is not None and not await self.drain(self.drain_timeout):
            _log.warning("plugin {}: messages still in flight after {}s", name, self.drain_timeout)
        await self.loader.teardown(old)
        duration = time.perf_counter() - started
        logger.bind(plugin=name).info("plugin {} reloaded in {:.0f} ms", name, duration * 1000)
        events = self.loader.events
        if events is not None:
            payload = PluginReloadedPayload(
                name=name, duration=duration, version=new.manifest.version
            )
            await events.emit(PLUGIN_RELOADED, payload)
        return None

    def _rediscover(self, item: Discovered) -> Discovered:
        """Import the entry point again (from the purged modules) and read its manifest."""
        module_name, _, attribute = item.target.partition(":")
        module = importlib.import_module(module_name)
        factory: Any = module
        for part in attribute.split(".") if attribute else ():
            factory = getattr(factory, part)
        fresh = Discovered(item.name, item.target, item.distribution, item.version)
        manifest = getattr(factory, "manifest", None)
        if manifest is None:
            raise TypeError(f"{item.target} has no manifest after the edit")
        if manifest.name != item.name:
            raise ValueError(f"the manifest name changed from {item.name!r} to {manifest.name!r}")
        fresh.factory = factory
        fresh.manifest = manifest.model_copy(update={"version": item.version or manifest.version})
        return fresh

    async def _emit_failed(
        self, name: str, error: str, origin: dict[str, Any], distribution: str | None
    ) -> None:
        events = self.loader.events
        if events is None:
            return
        payload = PluginFailedPayload(
            name=name,
            stage="reload",
            error=error,
            file=origin.get("file"),
            line=origin.get("line"),
            distribution=distribution,
        )
        await events.emit(PLUGIN_FAILED, payload)
