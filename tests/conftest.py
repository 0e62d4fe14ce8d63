"""Fixtures shared by several test directories: the session's PostgreSQL (pgserver)."""

from storage.pg_server import pg_server_uri, pg_store_factory

__all__ = ["pg_server_uri", "pg_store_factory"]
