"""A real PostgreSQL 16 with pgvector for the storage suite, started by pgserver (no root, no
docker) once per test session in a temp dir. Each store gets its own schema, so stores are
isolated and cheap to create. Skips (with the reason) where pgserver cannot run."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from contracts.storage import DatabaseAdapter

__all__ = ["pg_server_uri", "pg_store_factory"]

_schemas = itertools.count()


@pytest.fixture(scope="session")
def pg_server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a session-wide PostgreSQL with the vector extension installed."""
    try:
        import pgserver
    except ImportError as exc:  # the optional extra: wheels for CPython 3.11-3.12 only
        pytest.skip(f"pgserver is not installed ({exc}); pip install 'agenthost[pgserver]'")
    directory: Path = tmp_path_factory.mktemp("pg")
    try:
        server: Any = pgserver.get_server(directory, cleanup_mode="stop")
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    except Exception as exc:
        pytest.skip(f"cannot start PostgreSQL with pgserver: {exc}")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def schema_uri(base: str, schema: str) -> str:
    """`base` with the search path set to `schema` (then public, where pgvector lives)."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-c search_path={schema},public')}"


@pytest.fixture(scope="session")
def pg_store_factory(pg_server_uri: str) -> Any:
    """Callable returning an async context manager over a fresh, empty PostgreSQL store."""
    import psycopg

    from builtin_plugins.postgres import PostgresAdapter

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[DatabaseAdapter]:
        schema = f"store_{next(_schemas)}"
        async with await psycopg.AsyncConnection.connect(pg_server_uri, autocommit=True) as conn:
            await conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
        db = await PostgresAdapter.open(schema_uri(pg_server_uri, schema), max_size=4)
        try:
            yield db
        finally:
            await db.close()
            async with await psycopg.AsyncConnection.connect(
                pg_server_uri, autocommit=True
            ) as conn:
                await conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]

    return open_store
