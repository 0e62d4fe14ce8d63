"""Memory store on PostgreSQL with pgvector."""

from __future__ import annotations

from .adapter import PostgresAdapter
from .plugin import PostgresPlugin, PostgresSettings

__all__ = ["PostgresAdapter", "PostgresPlugin", "PostgresSettings"]
