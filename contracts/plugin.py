"""The plugin surface: a `Manifest` describing the plugin and the `Plugin` base class.

A plugin is a class registered under the entry-point group ``agenthost.plugins``. The host reads
its `manifest` without constructing it (to order loading), then constructs it with its
``__init__`` parameters injected from the container, calls `setup`, and registers what the
component methods return. Every component method is optional.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.tokens import Token

if TYPE_CHECKING:
    from contracts.agent import Action, Evaluator, Provider
    from contracts.events import EventHandler
    from contracts.models import ModelHandler
    from contracts.services import Service

__all__ = ["ENTRY_POINT_GROUP", "LoadedPluginLike", "Manifest", "MetricReading", "Plugin"]

ENTRY_POINT_GROUP = "agenthost.plugins"

MetricReading = Mapping[str, float]
"""``{metric name: value}``: what `Plugin.metric_counters` and `Plugin.metric_gauges` return."""

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class Manifest(BaseModel):
    """What the host knows about a plugin before constructing it."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    name: str
    """Unique plugin name: lowercase letters, digits, `-` and `_`; the entry point's name."""
    description: str = ""
    version: str = "0.0.0"
    """Filled in by discovery from the plugin's distribution."""
    dependencies: tuple[str, ...] = ()
    """Names of plugins that must load before this one."""
    priority: int = 0
    """Higher loads earlier among peers and wins when two plugins provide the same service."""
    provides: tuple[Token[Any], ...] = ()
    """Service tokens this plugin's `services()` binds; plugins needing them load after it."""
    settings: type[BaseModel] | None = None
    """Pydantic model for this plugin's config section ``plugins.<name>``; injectable by type."""
    reloadable: bool = True
    """Dev mode may hot-reload this plugin when its files change."""
    watch_paths: tuple[str, ...] = ()
    """Paths watched in dev mode; default: the plugin's package directory."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Free-form metadata for tools; ignored by the host."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"invalid plugin name {value!r}: use 1-64 lowercase letters, digits, '-' or '_',"
                " starting with a letter"
            )
        return value

    @field_validator("dependencies")
    @classmethod
    def _valid_dependencies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for dep in value:
            if not _NAME.match(dep):
                raise ValueError(f"invalid dependency name {dep!r}")
        return value


class Plugin:
    """Base class for plugins. Subclasses set `manifest` and override what they need.

    ``__init__`` parameters are injected by annotation (``db: DatabaseAdapter``) or by token
    (``db: Annotated[DatabaseAdapter, DATABASE]``); see docs/plugins.md.
    """

    manifest: ClassVar[Manifest]

    async def setup(self) -> None:
        """Called once after construction, in load order. Raise to fail the plugin."""

    async def teardown(self) -> None:
        """Called once at shutdown or unload, in reverse load order. Release what setup took."""

    def services(self) -> Sequence[Service[Any]]:
        """Services this plugin provides to the container (tokens listed in manifest.provides)."""
        return ()

    def models(self) -> Sequence[ModelHandler[Any, Any]]:
        """Model handlers this plugin registers (model type, provider name, priority)."""
        return ()

    def actions(self) -> Sequence[Action]:
        """Actions agents may take."""
        return ()

    def providers(self) -> Sequence[Provider]:
        """Providers composing agent state."""
        return ()

    def evaluators(self) -> Sequence[Evaluator]:
        """Evaluators run after each reply."""
        return ()

    def event_handlers(self) -> Sequence[EventHandler[Any]]:
        """Typed event subscriptions, removed when the plugin unloads."""
        return ()

    def metric_counters(self) -> MetricReading:
        """Cumulative figures the host samples into counters (it adds the growth since the
        previous sample), e.g. ``{"agenthost.audit.appended": 1234}``: read when metrics are
        read (a ``/metrics`` scrape, ``agenthost stats``) and on a timer, so keep it cheap."""
        return {}

    def metric_gauges(self) -> MetricReading:
        """Current values the host samples into gauges, e.g. a connection pool's size (read
        like `metric_counters`). Names follow OpenTelemetry conventions (docs/metrics.md)."""
        return {}


class LoadedPluginLike(Protocol):
    """A loaded plugin as the host's registries see it (the loader's record): its name,
    manifest and constructed instance."""

    @property
    def name(self) -> str: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def instance(self) -> Plugin: ...
