"""Event store engines: `SqliteEventStore` (default) and `PostgresEventStore`."""

from __future__ import annotations

from .postgres import PostgresEventStore
from .sqlite import SqliteEventStore

__all__ = ["PostgresEventStore", "SqliteEventStore"]
