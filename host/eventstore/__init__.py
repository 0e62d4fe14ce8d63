"""Event store engines: `SqliteEventStore` (default) and `PostgresEventStore`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .sqlite import SqliteEventStore

if TYPE_CHECKING:
    from .postgres import PostgresEventStore

__all__ = ["PostgresEventStore", "SqliteEventStore"]


def __getattr__(name: str) -> Any:
    """`PostgresEventStore` on first use: it imports psycopg (~60 ms), which start-up on SQLite
    does not need."""
    if name == "PostgresEventStore":
        from .postgres import PostgresEventStore

        return PostgresEventStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
