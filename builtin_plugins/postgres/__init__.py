"""Memory store on PostgreSQL with pgvector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .plugin import PostgresPlugin, PostgresSettings

if TYPE_CHECKING:
    from .adapter import PostgresAdapter

__all__ = ["PostgresAdapter", "PostgresPlugin", "PostgresSettings"]


def __getattr__(name: str) -> Any:
    """`PostgresAdapter` on first use: psycopg and pgvector (~100 ms) are not start-up's cost
    when postgres is not the store."""
    if name == "PostgresAdapter":
        from .adapter import PostgresAdapter

        return PostgresAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
