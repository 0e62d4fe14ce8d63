"""Opening the event store the audit settings describe (also used by ``agenthost events``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.eventstore import EventStore, EventStoreError
from contracts.storage import DatabaseAdapter
from host.storekit import SqliteEventStore

from .settings import AuditSettings

__all__ = ["open_event_store"]


async def open_event_store(
    settings: AuditSettings,
    database: DatabaseAdapter | None,
    data_dir: str | Path,
) -> EventStore:
    """The event store for `settings`: PostgreSQL (on `database`'s pool, or its own from
    ``postgres_url``) or SQLite (its own file, or `database`'s file when shared)."""
    backend = settings.backend
    if backend == "auto":
        on_postgres = database is not None and database.backend == "postgres"
        backend = "postgres" if on_postgres or settings.postgres_url else "sqlite"
    if backend == "postgres":
        from host.storekit import PostgresEventStore  # psycopg only when used

        if settings.postgres_url is not None:
            return await PostgresEventStore.connect(settings.postgres_url.get_secret_value())
        pool: Any = getattr(database, "pool", None)
        if pool is None:
            raise EventStoreError(
                "plugins.audit: backend 'postgres' needs plugins.audit.postgres_url or the"
                " postgres memory store (services: {database: postgres}) to share its pool"
            )
        return await PostgresEventStore.open(pool)
    path = settings.resolve_path(data_dir)
    if settings.share_memory_database:
        shared = getattr(database, "path", None)
        if database is None or database.backend != "sqlite" or shared is None:
            raise EventStoreError(
                "plugins.audit.share_memory_database needs the sqlite memory store, got"
                f" {getattr(database, 'backend', None)!r}"
            )
        path = Path(shared)
    # the audit trail appends on its writer thread (append_encoded_blocking), never the loop's
    return await SqliteEventStore.open(
        path, busy_timeout=settings.busy_timeout, inline_appends=False
    )
