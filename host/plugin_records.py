"""What the loader keeps about plugins: a loaded plugin, its status row, the registrar protocol.

Kept apart from `host.loader` (which does the loading) so that readers of statuses (HTTP,
console, stores) and the reloader share these records without the loading machinery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from contracts.plugin import Manifest, Plugin
from host.discovery import Discovered

__all__ = ["LoadedPlugin", "PluginRegistrar", "PluginStatus", "Stage", "State", "plugin_names"]

State = Literal["loaded", "disabled", "failed"]
Stage = Literal["discover", "load", "setup", "teardown", "reload"]


class PluginRegistrar(Protocol):
    """Something plugins register into; every registration is tagged with the plugin's name."""

    def register_plugin(self, loaded: LoadedPlugin) -> Awaitable[None] | None: ...

    def unregister_plugin(self, name: str) -> Awaitable[None] | None: ...


@dataclass(slots=True)
class LoadedPlugin:
    """A constructed, set-up plugin."""

    manifest: Manifest
    instance: Plugin
    discovered: Discovered
    settings: BaseModel | None = None
    load_seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.manifest.name


@dataclass(slots=True)
class PluginStatus:
    """What ``agenthost plugins list`` shows for one plugin."""

    name: str
    version: str | None
    distribution: str | None
    state: State
    error: str | None = None
    stage: Stage | None = None
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "status": self.state,
            "error": self.error,
            "stage": self.stage,
            "description": self.description,
        }


def plugin_names(statuses: Iterable[PluginStatus], state: State) -> list[str]:
    return [s.name for s in statuses if s.state == state]
