"""Opening PostgreSQL: migrate the schema on a first connection, then open the pool; errors name
the server (never the password) and say what to do when the server lacks pgvector.
"""

from __future__ import annotations

import math

import psycopg
from loguru import logger
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from contracts.storage import PoolExhaustedError, StorageError, StorageUnavailableError
from host.storekit import safe_text

from .schema import MigrationStep, migrate

__all__ = ["VECTOR_HINT", "exhausted", "migrate_at", "missing_vector_hint", "open_pool"]

VECTOR_HINT = (
    "the server has no pgvector extension (CREATE EXTENSION vector failed). Install it on the"
    " server (https://github.com/pgvector/pgvector#installation; Debian/Ubuntu: the"
    " postgresql-<version>-pgvector package from apt.postgresql.org, which Debian's own"
    " repository lacks), or run `agenthost db start` for a local PostgreSQL with pgvector"
    " (pip install 'agenthost[pgserver]') and use the URL it prints"
)


def missing_vector_hint(exc: BaseException) -> str | None:
    """`VECTOR_HINT` when `exc` says the server cannot create the ``vector`` extension (its
    control file is not installed), else None."""
    text = str(exc)
    if '"vector"' in text and ("is not available" in text or "control file" in text):
        return VECTOR_HINT
    return None


def exhausted(message: str) -> PoolExhaustedError:
    """The error of a caller that found no free connection in time."""
    return PoolExhaustedError(f"{message} (raise plugins.postgres.pool_max or acquire_timeout)")


async def migrate_at(
    url: str, where: str, connect_timeout: float, on_migration: MigrationStep | None
) -> None:
    """Migrate the schema at `url` on a connection of its own (`where` names the server)."""
    try:
        # whole seconds, rounded up: psycopg reads 0 (a truncated 0.5) as its 130 s default
        async with await AsyncConnection.connect(
            url, connect_timeout=max(1, math.ceil(connect_timeout))
        ) as conn:
            await migrate(conn, where, on_migration)
    except psycopg.Error as exc:
        hint = missing_vector_hint(exc)
        if hint is not None:  # the server answers, but cannot serve vectors
            raise StorageError(f"cannot open PostgreSQL at {where}: {hint}") from None
        raise StorageUnavailableError(
            f"cannot open PostgreSQL at {where}: {safe_text(exc, url)}"
        ) from None


async def open_pool(
    url: str,
    where: str,
    *,
    min_size: int,
    max_size: int,
    acquire_timeout: float,
    max_idle: float,
    max_lifetime: float,
    reconnect_timeout: float,
    check_connections: bool,
    connect_timeout: float,
) -> AsyncConnectionPool:
    """An open pool to `url` (`where` names the server), pgvector's types registered on each
    connection (see `PostgresAdapter.open` for the options)."""

    def reconnect_failed(pool: AsyncConnectionPool) -> None:
        logger.warning(
            "PostgreSQL at {} unreachable for {} s: the pool stops reconnecting until asked",
            where,
            reconnect_timeout,
        )

    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        configure=register_vector_async,
        check=AsyncConnectionPool.check_connection if check_connections else None,
        timeout=acquire_timeout,
        max_idle=max_idle,
        max_lifetime=max_lifetime,
        reconnect_timeout=reconnect_timeout,
        reconnect_failed=reconnect_failed,
        name=f"agenthost {where}",
    )
    try:
        await pool.open(wait=True, timeout=connect_timeout)
    except PoolTimeout as exc:
        await pool.close()
        raise StorageError(f"cannot open a connection pool to {where}: {exc}") from None
    return pool
