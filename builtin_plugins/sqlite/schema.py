"""The SQLite memory schema and its migrations, versioned in the database itself.

`migrate` applies, each in its own transaction, every migration newer than the version recorded
in ``schema_migrations``; a database written by a newer agenthost is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from contracts.storage import StorageError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "MigrationStep", "migrate", "schema_version"]

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "memories, per-table embedding dimensions and versions",
        """
        CREATE TABLE memory_tables (
            table_name TEXT PRIMARY KEY,
            dimension INTEGER,               -- fixed by the first embedding written
            version INTEGER NOT NULL DEFAULT 0  -- bumped by every write (keeps indexes in step)
        );
        CREATE TABLE memories (
            seq INTEGER PRIMARY KEY,         -- rowid: the vector index label
            id BLOB NOT NULL UNIQUE,         -- UUID bytes (memcmp order = UUID order)
            table_name TEXT NOT NULL,
            agent_id BLOB NOT NULL,
            entity_id BLOB NOT NULL,
            room_id BLOB NOT NULL,
            created_at INTEGER NOT NULL,     -- microseconds since the Unix epoch, UTC
            content TEXT NOT NULL,           -- JSON
            metadata TEXT NOT NULL,          -- JSON
            embedding BLOB,                  -- float32 little-endian
            is_unique INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX memories_order ON memories (created_at, id);
        CREATE INDEX memories_table_order ON memories (table_name, created_at, id);
        CREATE INDEX memories_room_order ON memories (room_id, created_at, id);
        CREATE INDEX memories_agent_order ON memories (agent_id, created_at, id);
        CREATE INDEX memories_entity_order ON memories (entity_id, created_at, id);
        """,
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]

MigrationStep = Callable[[int, int, str], None]
"""Told ``(n, of, description)`` before the n-th of `of` pending migrations runs."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest migration applied to `conn`'s database (0 for a new database)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, path: str, on_step: MigrationStep | None = None) -> int:
    """Bring the database at `path` to `SCHEMA_VERSION`; returns the version it had before.
    `on_step(n, of, description)` is called before each migration applied (``agenthost db
    migrate`` shows it as progress)."""
    before = schema_version(conn)
    if before > SCHEMA_VERSION:
        raise StorageError(
            f"SQLite database {path} has schema version {before}, newer than this agenthost"
            f" supports ({SCHEMA_VERSION}); upgrade agenthost or set plugins.sqlite.path elsewhere"
        )
    pending = [m for m in MIGRATIONS if m[0] > before]
    for n, (version, description, script) in enumerate(pending, 1):
        if on_step is not None:
            on_step(n, len(pending), description)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (version, description, datetime.now(UTC).isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return before
