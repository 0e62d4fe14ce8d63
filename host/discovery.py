"""Finding plugins: every entry point in the group ``agenthost.plugins`` is one plugin.

An entry point names a `Plugin` subclass (or a factory callable carrying a ``manifest``
attribute). Discovery imports it and reads its manifest without constructing anything, and
fills in the version from the plugin's distribution. Whatever goes wrong with one plugin (an
import error, no or an invalid manifest, a name another distribution already uses) is logged
once, naming the plugin, its distribution and the cause, and that plugin is marked failed; the
others are unaffected.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import importlib_metadata
from loguru import logger
from pydantic import ValidationError

from contracts.plugin import ENTRY_POINT_GROUP, Manifest

__all__ = [
    "Discovered",
    "NotAPlugin",
    "discover",
    "from_entry_points",
    "read_manifest",
    "where_raised",
]

Status = Literal["discovered", "failed"]


@dataclass(slots=True)
class Discovered:
    """One plugin found through an entry point, or why it could not be used."""

    name: str
    target: str
    """The entry point's value, ``package.module:Class``."""
    distribution: str | None
    version: str | None
    factory: Callable[..., Any] | None = None
    """The plugin class (or factory) to construct; None when discovery failed."""
    manifest: Manifest | None = None
    error: str | None = None
    origin: dict[str, Any] = field(default_factory=dict)
    """File and line of a failure, when known (for reload messages and `plugins list`)."""

    @property
    def status(self) -> Status:
        return "failed" if self.error is not None else "discovered"

    def fail(self, error: str) -> None:
        self.error = error
        logger.bind(plugin=self.name).error(
            "plugin {} (distribution {}) failed: {}",
            self.name,
            self.distribution or "unknown",
            error,
        )


def discover(group: str = ENTRY_POINT_GROUP) -> list[Discovered]:
    """Every plugin installed in this environment, sorted by name (failed ones included)."""
    return from_entry_points(importlib_metadata.entry_points(group=group))


def from_entry_points(entry_points: Iterable[importlib_metadata.EntryPoint]) -> list[Discovered]:
    """Discover from these entry points (tests pass their own)."""
    found: dict[str, Discovered] = {}
    duplicates: list[Discovered] = []
    identities: dict[int, tuple[Any, str, str]] = {}
    for ep in entry_points:
        dist = getattr(ep, "dist", None)
        name = version = None
        if dist is not None:
            _, name, version = _identity(dist, identities)
        item = Discovered(name=ep.name, target=ep.value, distribution=name, version=version)
        if ep.name in found:
            first = found[ep.name]
            item.fail(
                f"duplicate plugin name {ep.name!r}: already provided by distribution "
                f"{first.distribution} ({first.target}); this one ({item.target}) is ignored"
            )
            duplicates.append(item)
            continue
        found[ep.name] = item
        _load(ep, item)
    return sorted([*found.values(), *duplicates], key=lambda d: (d.name, d.status == "failed"))


def _identity(dist: Any, known: dict[int, tuple[Any, str, str]]) -> tuple[Any, str, str]:
    """`dist`, its name and version, read once per distribution: each read of ``dist.name`` or
    ``dist.version`` parses its whole METADATA file (the README included: ~1 ms), and one
    distribution (agenthost's builtins) provides ten plugins. Keyed by the object (kept in the
    value, so its id cannot be reused meanwhile)."""
    found = known.get(id(dist))
    if found is None:
        metadata = dist.metadata  # one parse for both fields (``dist.name`` parses it again)
        try:
            found = (dist, metadata["Name"], metadata["Version"])
        except KeyError:  # a field missing: the error naming the distribution, as before
            found = (dist, dist.name, dist.version)
        known[id(dist)] = found
    return found


def _load(ep: importlib_metadata.EntryPoint, item: Discovered) -> None:
    try:
        factory = ep.load()
    except BaseException as exc:  # a plugin's import may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        item.origin = where_raised(exc)
        at = f" at {item.origin['file']}:{item.origin['line']}" if item.origin else ""
        item.fail(f"cannot import {item.target}: {type(exc).__name__}: {exc}{at}")
        return
    try:
        manifest = read_manifest(factory, item.target, item.name, item.version)
    except NotAPlugin as exc:
        item.fail(str(exc))
        return
    item.factory = factory
    item.manifest = manifest


class NotAPlugin(Exception):
    """An entry point's object is no usable plugin; the message says why."""


def read_manifest(factory: Any, target: str, name: str, version: str | None) -> Manifest:
    """The validated manifest of `factory`, loaded from entry point `name` (`target`), with the
    distribution's `version` when known. Discovery and a reload's re-import check the same way."""
    manifest = getattr(factory, "manifest", None)
    if not callable(factory) or manifest is None:
        raise NotAPlugin(f"{target} is not a plugin: it has no `manifest` (subclass Plugin)")
    if not isinstance(manifest, Manifest):
        try:
            manifest = Manifest.model_validate(manifest)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise NotAPlugin(f"invalid manifest in {target}: {problems}") from None
    if manifest.name != name:
        raise NotAPlugin(
            f"manifest name {manifest.name!r} in {target} differs from its entry point "
            f"name {name!r}"
        )
    return manifest if version is None else manifest.model_copy(update={"version": version})


def where_raised(exc: BaseException) -> dict[str, Any]:
    """The file and line an exception points at: a SyntaxError's own position, else the last
    traceback frame outside the import machinery."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return {"file": exc.filename, "line": exc.lineno}
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in f.filename and f.filename != __file__
    ]
    if frames:
        return {"file": frames[-1].filename, "line": frames[-1].lineno}
    return {}
