"""Apply the schema migrations of the configured memory store and event store now, rather than
when the host next opens them (``agenthost db migrate``).

The stores migrate themselves when they open; this opens them the way ``agenthost run`` would
(the built-in SQLite and PostgreSQL memory stores, the audit plugin's event store), tells
`on_step` each migration as it starts, and says what was done. Running it again does nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.config import HostConfig

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
    from host.cli_events import _memory_store

    backend = _memory_store(config)

    def step(n: int, of: int, description: str) -> None:
        on_step("memory", n, of, description)

    if backend == "sqlite":
        from builtin_plugins.sqlite.adapter import SqliteAdapter
        from builtin_plugins.sqlite.plugin import SqliteSettings
        from builtin_plugins.sqlite.schema import SCHEMA_VERSION

        path = SqliteSettings.model_validate(config.plugins.section("sqlite")).resolve_path(
            config.data_dir
        )
        done = StoreMigration("memory", "sqlite", str(path), version=SCHEMA_VERSION)

        def sqlite_step(n: int, of: int, description: str) -> None:
            done.applied.append(description)
            step(n, of, description)

        adapter = await SqliteAdapter.open(path, on_migration=sqlite_step)
        await adapter.close()
        return done
    if backend == "postgres":
        from builtin_plugins.postgres.adapter import PostgresAdapter
        from builtin_plugins.postgres.schema import SCHEMA_VERSION as PG_VERSION
        from contracts.storage import StorageError
        from host.pgpool import describe_url

        url = config.plugins.section("postgres").get("url")
        if not url:
            raise StorageError("plugins.postgres.url is not set (AGENTHOST_PLUGINS__POSTGRES__URL)")
        secret = str(url.get_secret_value() if hasattr(url, "get_secret_value") else url)
        done = StoreMigration("memory", "postgres", describe_url(secret), version=PG_VERSION)

        def pg_step(n: int, of: int, description: str) -> None:
            done.applied.append(description)
            step(n, of, description)

        pool = await PostgresAdapter.open(secret, min_size=1, max_size=1, on_migration=pg_step)
        await pool.close()
        return done
    return StoreMigration(
        "memory", backend, "", skipped=f"the {backend} plugin migrates its store when it opens"
    )


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
