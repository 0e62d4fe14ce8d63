"""The host's configuration schema: one pydantic model per section of ``config/agenthost.yaml``.

Values come from, in rising precedence: these defaults, the YAML file (``--config`` or
``AGENTHOST_CONFIG``), then environment variables ``AGENTHOST_<SECTION>__<KEY>`` (for example
``AGENTHOST_HTTP__PORT=8080``, ``AGENTHOST_PLUGINS__WEATHER__API_KEY=...``). Loading lives in
``host.config``; this module only describes the shape, so plugins can read the config they are
injected (``config: HostConfig``) with types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from contracts.cluster import ClusterSettings
from contracts.metrics import MetricsSettings
from contracts.models import ModelSettings
from contracts.tokens import Token

__all__ = [
    "SETTINGS",
    "AgentsSettings",
    "CacheSettings",
    "EventsSettings",
    "HostConfig",
    "HttpSettings",
    "LoggingSettings",
    "LoopMonitorSettings",
    "PluginsSettings",
    "ReloadSettings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LoggingSettings(_Section):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    json_lines: bool = Field(default=False, alias="json")
    """One JSON object per line (for log shippers) instead of coloured text."""
    file: Path | None = None
    """Also write to this file (rotated at 10 MB); stderr always gets the logs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class PluginsSettings(_Section):
    """Which discovered plugins load, and each plugin's own settings section.

    ``plugins.<name>`` holds the settings of the plugin called ``name`` (validated by the model
    its manifest declares); every other key here is one of the fields below."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, dict[str, Any] | None] = Field(init=False)
    """Every other key is a plugin's section: a mapping, or empty (``plugins.disable: [x]``,
    a typo of ``disabled``, is an error rather than a section nobody reads)."""

    enabled: list[str] | None = None
    """Load only these (None: every discovered plugin). Unknown names are a startup error."""
    disabled: list[str] = Field(default_factory=list)
    """Never load these. Unknown names are a startup error."""
    setup_timeout: float = Field(default=60.0, gt=0)
    """Seconds a plugin's ``setup()`` may take (also on hot reload): past it the setup is
    cancelled and the plugin fails at stage ``setup``; the host goes on without it."""
    teardown_timeout: float = Field(default=30.0, gt=0)
    """Seconds a plugin's ``teardown()`` may take before the host stops waiting for it."""

    def section(self, name: str) -> dict[str, Any]:
        """The raw settings section of plugin `name` (empty if none)."""
        extra = self.model_extra or {}
        return dict(extra.get(name) or extra.get(name.replace("-", "_")) or {})


class EventsSettings(_Section):
    handler_timeout: float | None = Field(default=30.0, gt=0)
    """Seconds an async event handler may run before it is cancelled and reported."""
    detached_limit: int = Field(default=1000, ge=1)
    """Detached handler runs in flight at most; past it, emits wait."""


class HttpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=7777, ge=0, le=65535)
    """0 picks a free port (printed at start)."""
    api_key: SecretStr | None = None
    """When set, every route but ``/health`` needs it in the ``X-API-Key`` header."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


class AgentsSettings(_Section):
    characters_dir: Path = Path("config/characters")
    """Character files (YAML or JSON, ElizaOS format accepted) loaded at start."""
    characters: list[dict[str, Any]] = Field(default_factory=list)
    """Characters defined inline, same fields as a character file (added to the files')."""
    start: list[str] | None = None
    """Agents started with the host (None: every character found)."""
    provider_timeout: float = Field(default=5.0, gt=0)
    action_timeout: float = Field(default=30.0, gt=0)
    evaluator_timeout: float = Field(default=30.0, gt=0)
    history: int = Field(default=10, ge=0)
    embed: bool = True
    respond_in_groups: bool = False
    max_actions: int = Field(default=5, ge=0)


class ReloadSettings(_Section):
    """Hot reload in dev mode (``dev: true``)."""

    debounce: float = Field(default=0.1, ge=0)
    """Seconds of quiet after a save before reloading (a burst of saves is one reload)."""
    drain_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for messages in flight before tearing down a replaced version."""
    watch_builtins: bool = False
    """Also watch the builtin plugins (for working on agenthost itself)."""


class LoopMonitorSettings(_Section):
    """The blocked event loop monitor (``host.blocking``)."""

    enabled: bool = True
    threshold: float = Field(default=0.1, gt=0, le=60)
    """Seconds one callback may hold the event loop before a WARNING names the plugin
    component running (a provider, action, evaluator or event handler)."""


class CacheSettings(_Section):
    max_entries: int | None = Field(default=10_000, ge=1)
    max_bytes: int | None = Field(default=None, ge=1)


class HostConfig(BaseModel):
    """The whole configuration."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Path("data")
    """Where the default SQLite store and other local state live."""
    dev: bool = False
    """Dev mode: reload plugins when their files change (see ``reload``)."""
    gc_freeze: bool = True
    """Once started, freeze what start-up made out of the garbage collector's walks
    (``gc.freeze``, `host.heap`; never in dev mode), and collect the youngest generation less
    often while it runs (`host.heap.YOUNG_THRESHOLD`). The freeze is process-wide: an app that
    embeds the host and makes and drops reference cycles of its own may turn it off."""
    reload: ReloadSettings = Field(default_factory=ReloadSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    plugins: PluginsSettings = Field(default_factory=PluginsSettings)
    services: dict[str, str] = Field(default_factory=dict)
    """Service token name -> the plugin that must provide it (e.g. ``database: postgres``)."""
    models: ModelSettings = Field(default_factory=ModelSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    agents: AgentsSettings = Field(default_factory=AgentsSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    loop_monitor: LoopMonitorSettings = Field(default_factory=LoopMonitorSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    """Cluster mode (off by default: one process); see docs/cluster.md."""


SETTINGS: Token[HostConfig] = Token("settings", HostConfig)
"""The host's effective configuration (plugins get their own section by its model's type)."""
