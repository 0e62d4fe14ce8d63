"""What a plugin owns on disk and in `sys.modules`, for the reloader: its package, the paths
to watch, purging and restoring its modules, and the watchdog handler that reports edits.

Kept apart from `host.reload.Reloader` (which sequences a reload) because these are plain
functions over module names and files.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

from loguru import logger
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from host.discovery import Discovered

__all__ = [
    "WATCHED_SUFFIXES",
    "FileEvents",
    "package_of",
    "purge",
    "restore",
    "watch_paths",
    "within",
]

_log = logger.bind(plugin="host")
WATCHED_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".toml")


def package_of(target: str, others: Iterable[str] = ()) -> str:
    """The package a plugin owns: the shortest prefix of its entry point's module that holds no
    other plugin's module (`others`: their entry point values). ``weather.plugin:Cls`` ->
    ``weather``; ``builtin_plugins.eliza.plugin`` beside ``builtin_plugins.sqlite.plugin`` ->
    ``builtin_plugins.eliza`` (purging ``builtin_plugins`` would purge every builtin)."""
    parts = target.partition(":")[0].split(".")
    modules = [other.partition(":")[0] for other in others]
    for size in range(1, len(parts)):
        prefix = ".".join(parts[:size])
        if not any(within(m, (prefix,)) for m in modules):
            return prefix
    return ".".join(parts)


def within(module: str, packages: Iterable[str]) -> bool:
    """Whether `module` is one of `packages` or inside one (``a.b`` is in ``a``, ``ab`` not)."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def watch_paths(item: Discovered, package: str | None = None) -> list[Path]:
    """What to watch for plugin `item`: its manifest's ``watch_paths`` (relative ones against
    its package directory), else the directory of its `package` (by default the top-level
    one), or the module file itself for a single-module plugin (not its whole directory,
    which is often site-packages)."""
    module = sys.modules.get(package or package_of(item.target))
    base: Path | None = None
    default: list[Path] = []
    if module is not None:
        locations = getattr(module, "__path__", None)
        if locations:
            base = Path(next(iter(locations)))
            default = [base]
        elif getattr(module, "__file__", None):
            default = [Path(str(module.__file__))]
            base = default[0].parent
    manifest = item.manifest
    if manifest is not None and manifest.watch_paths:
        return [Path(p) if Path(p).is_absolute() or base is None else base / p
                for p in manifest.watch_paths]  # fmt: skip
    return default


def purge(packages: Iterable[str]) -> dict[str, ModuleType]:
    """Take the packages' modules out of `sys.modules` (returned) and delete their bytecode
    caches: a ``.pyc`` is trusted when the source's size and mtime (whole seconds) match, so an
    edit of the same length within the second of the last import would load the old code."""
    roots = tuple(packages)
    taken = {name: module for name, module in sys.modules.items() if within(name, roots)}
    for name, module in taken.items():
        del sys.modules[name]
        cached = getattr(module, "__cached__", None)
        if cached:
            try:
                Path(cached).unlink(missing_ok=True)
            except OSError as exc:
                _log.debug("cannot delete {}: {}", cached, exc)
    importlib.invalidate_caches()
    return taken


def restore(packages: Iterable[str], kept: dict[str, ModuleType]) -> None:
    """Drop what importing the new code put in `sys.modules` and put the `kept` modules back."""
    roots = tuple(packages)
    for name in [m for m in sys.modules if within(m, roots)]:
        del sys.modules[name]
    sys.modules.update(kept)


class FileEvents(FileSystemEventHandler):
    """Calls `callback` with the path of each change to a watched file (by suffix)."""

    def __init__(self, callback: Callable[[str], None]) -> None:
        self.callback = callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("modified", "created", "moved", "deleted"):
            return
        path = str(getattr(event, "dest_path", "") or event.src_path)
        if path.endswith(WATCHED_SUFFIXES):
            self.callback(path)
