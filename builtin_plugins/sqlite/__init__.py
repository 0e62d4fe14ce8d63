"""The default memory store: SQLite in WAL mode, off the event loop, with faiss indexes."""

from __future__ import annotations

from .adapter import SqliteAdapter
from .plugin import SqlitePlugin, SqliteSettings

__all__ = ["SqliteAdapter", "SqlitePlugin", "SqliteSettings"]
