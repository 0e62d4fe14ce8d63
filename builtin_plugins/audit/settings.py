"""`AuditSettings`: config section ``plugins.audit``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from host.storekit import SECRET_KEYS

__all__ = ["DEFAULT_EVENTS", "DEFAULT_FILE", "AuditSettings"]

DEFAULT_FILE = "events.sqlite3"

DEFAULT_EVENTS: tuple[str, ...] = (
    "message:received",
    "message:sent",
    "model:used",
    "action:started",
    "action:completed",
    "memory:created",
    "memory:updated",
    "memory:deleted",
    "agent:started",
    "agent:stopped",
    "plugin:loaded",
    "plugin:unloaded",
    "plugin:reloaded",
    "plugin:failed",
)
"""What the audit trail records by default: every runtime and plugin lifecycle event."""


class AuditSettings(BaseModel):
    """Where the event store lives and which bus events the audit trail records.

    Example (config/agenthost.yaml)::

        plugins:
          audit:
            events: ["message:received", "message:sent", "model:used"]
            backend: sqlite            # auto | sqlite | postgres
            path: audit/events.sqlite3 # relative to data_dir
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "sqlite", "postgres"] = "auto"
    """``auto``: PostgreSQL on the storage adapter's pool when the memory store is PostgreSQL,
    else SQLite."""
    path: Path | None = None
    """SQLite file; relative paths and the default (``events.sqlite3``) live in the data dir.
    ``:memory:`` keeps the log in memory (lost at exit)."""
    share_memory_database: bool = False
    """SQLite: put the log into the memory store's own database file instead of `path`."""
    postgres_url: SecretStr | None = None
    """PostgreSQL conninfo for a pool of the event store's own (default: share the storage
    adapter's pool)."""
    busy_timeout: float = Field(default=30.0, gt=0)
    events: tuple[str, ...] = DEFAULT_EVENTS
    """Bus event names to record; ``["*"]`` records every event."""
    exclude: tuple[str, ...] = ()
    """Event names never recorded (applied after `events`)."""
    record_embeddings: bool = False
    """Keep memory embeddings in the trail (large; replay does not need them)."""
    redact_keys: tuple[str, ...] = SECRET_KEYS
    """Key-name fragments whose values are masked wherever they appear in a payload."""
    flush_interval: float = Field(default=0.02, ge=0)
    """Seconds the background writer lets events accumulate before one transaction appends them
    (0: append as soon as one is queued). At most this much of the trail is lost on a crash."""
    max_batch: int = Field(default=500, ge=1)
    """Most events the background writer appends in one transaction."""
    writer: Literal["auto", "process", "thread"] = "auto"
    """Who appends to a SQLite file: ``process``, a child process of the host's (its SQLite
    work then holds no lock the event loop needs; ~30 ms of CPU to start, once, in the
    background), or ``thread``, the recorder's own writer thread. ``auto`` and ``process``:
    the process where the store has one (a SQLite file), the thread otherwise (PostgreSQL,
    ``:memory:``, a frozen application or an embedded interpreter: no Python to start).
    Either way events are converted and secrets masked in the host process, on the writer
    thread (docs/eventstore.md). A child that dies, or does not answer within
    `busy_timeout` + 30 s (stopped, hung), is replaced and its batch resent; it ignores
    SIGINT, SIGTERM and SIGHUP (the host's to act on) and exits when the host does."""
    retries: int = Field(default=3, ge=0)
    retry_delay: float = Field(default=0.05, ge=0)

    def wants(self, event_type: str) -> bool:
        """Whether the trail records bus event `event_type`."""
        if event_type in self.exclude:
            return False
        return "*" in self.events or event_type in self.events

    def resolve_path(self, data_dir: str | Path) -> Path:
        """The SQLite file: `path` if absolute (or ``:memory:``), else under `data_dir`."""
        path = self.path if self.path is not None else Path(DEFAULT_FILE)
        if str(path) == ":memory:" or path.is_absolute():
            return path
        return Path(data_dir) / path
