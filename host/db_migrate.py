"""Apply the schema migrations of the configured memory store and event store now, rather than
when the host next opens them (``agenthost db migrate``).

The stores migrate themselves when they open; this opens them the way ``agenthost run`` would
(a memory store plugin that is a `MigratableStore`, found through its entry point; the audit
plugin's event store), tells
`on_step` each migration as it starts, and says what was done. Running it again does nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.config import HostConfig
from contracts.storage import MigratableStore

__all__ = ["StoreMigration", "migrate_stores"]

Step = Callable[[str, int, int, str], None]
"""Told ``(store, n, of, description)`` before the n-th of `of` pending migrations of `store`."""


@dataclass
class StoreMigration:
    """What `migrate_stores` did to one store."""

    store: str  # "memory" or "events"
    backend: str  # "sqlite", "postgres", or the name of a store plugin it cannot migrate
    where: str  # a path, or a URL without its password
    applied: list[str] = field(default_factory=list)  # the migrations applied, in order
    version: int | None = None  # the schema version now (None: the store keeps no number)
    skipped: str | None = None  # why it was left alone

    def as_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "backend": self.backend,
            "where": self.where,
            "applied": self.applied,
            "version": self.version,
            "skipped": self.skipped,
        }


def _enabled(config: HostConfig, plugin: str) -> bool:
    enabled = config.plugins.enabled
    return plugin not in config.plugins.disabled and (enabled is None or plugin in enabled)


async def _memory(config: HostConfig, on_step: Step) -> StoreMigration:
    """Migrate the memory store through its plugin (found by its entry point) when the plugin
    can (`MigratableStore`); a store that cannot is left to migrate itself when it opens."""
    from host.cli_events import _memory_store
    from host.plugin_lookup import PluginNotFoundError, construct

    backend = _memory_store(config)
    try:
        plugin: object = construct(backend, config)
    except PluginNotFoundError as exc:
        return StoreMigration("memory", backend, "", skipped=str(exc))
    if not isinstance(plugin, MigratableStore):
        return StoreMigration(
            "memory", backend, "", skipped=f"the {backend} plugin migrates its store when it opens"
        )
    applied: list[str] = []

    def step(n: int, of: int, description: str) -> None:
        applied.append(description)
        on_step("memory", n, of, description)

    done = await plugin.migrate_store(step)
    return StoreMigration("memory", backend, done.where, applied, done.version)


async def _events(config: HostConfig, data_dir: Path | None, on_step: Step) -> StoreMigration:
    if not _enabled(config, "audit"):
        return StoreMigration("events", "", "", skipped="the audit plugin is not enabled")
    from host.cli_events import open_store, store_location
    from host.pgpool import describe_url

    where = store_location(None, data_dir, config)
    description = "event log tables and indexes"
    if isinstance(where, str):
        import psycopg

        from contracts.eventstore import EventStoreError
        from host.pgpool import safe_text

        try:
            async with await psycopg.AsyncConnection.connect(where) as conn:
                cursor = await conn.execute("SELECT to_regclass('event_log') IS NOT NULL")
                row = await cursor.fetchone()
                existed = bool(row and row[0])
        except psycopg.Error as exc:
            raise EventStoreError(
                f"cannot connect the event store to PostgreSQL at {describe_url(where)}:"
                f" {safe_text(exc, where)}"
            ) from None
        done = StoreMigration("events", "postgres", describe_url(where))
    else:
        existed = where.exists() and _has_table(where, "event_log")
        done = StoreMigration("events", "sqlite", str(where))
    if not existed:
        on_step("events", 1, 1, description)
        done.applied.append(description)
    store = await open_store(None, data_dir, create=True, config=config)
    await store.close()
    return done


def _has_table(path: Path, table: str) -> bool:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return row is not None
    finally:
        conn.close()


async def migrate_stores(
    config: HostConfig, data_dir: Path | None = None, on_step: Step | None = None
) -> list[StoreMigration]:
    """Migrate the memory store, then the event store, the host's configuration names
    (`data_dir` overrides the configured one for the event store's SQLite file)."""

    def quiet(store: str, n: int, of: int, description: str) -> None:
        pass

    step = on_step or quiet
    return [await _memory(config, step), await _events(config, data_dir, step)]
