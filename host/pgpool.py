"""Pooled PostgreSQL connections whose failures say what happened, in the caller's error type.

While the server is down, psycopg_pool's callers only see `PoolTimeout` ("couldn't get a
connection") after the acquire timeout, and a connection lost under a running statement raises a
raw `psycopg.OperationalError`. `pooled` tells the cases apart: the server cannot be reached (a
lost connection, or no connection could be opened: the reason comes from one direct attempt) is
the caller's *unavailable* error naming host and port; every connection in use is its
*exhausted* error. Passwords never appear (`describe_url`, `safe_text`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

__all__ = ["connection_lost", "describe_url", "pooled", "safe_text"]

PROBE_TIMEOUT = 2
"""Seconds the direct attempt that finds why no pooled connection came may take."""
_SERVER_GONE = {"57P01", "57P02", "57P03"}
"""admin_shutdown, crash_shutdown, cannot_connect_now (SQLSTATE class 08 is the rest)."""


def describe_url(url: str) -> str:
    """`url` without its password: ``postgresql://user@host:port/db``."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable connection string>"
    user = str(parts.get("user") or "")
    host = parts.get("host") or "localhost"
    port = parts.get("port")
    where = f"{host}:{port}" if port else str(host)
    return f"postgresql://{user + '@' if user else ''}{where}/{parts.get('dbname') or ''}"


def safe_text(exc: BaseException, url: str) -> str:
    """The first line of the error's text with any password from `url` removed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.ProgrammingError:
        password = None
    return text.replace(str(password), "****") if password else text


def connection_lost(exc: psycopg.Error, conn: AsyncConnection[Any]) -> bool:
    """Whether `exc` means the server went away (rather than refusing a statement)."""
    state = exc.sqlstate or ""
    return conn.broken or conn.closed or state.startswith("08") or state in _SERVER_GONE


def _conninfo(pool: AsyncConnectionPool[Any]) -> str:
    return pool.conninfo if isinstance(pool.conninfo, str) else ""  # "" for a callable one


async def _unreachable_reason(pool: AsyncConnectionPool[Any]) -> str | None:
    """Why a connection cannot be opened now (one direct attempt), or None if it can."""
    conninfo = _conninfo(pool)
    if not conninfo:
        return "its connection string is computed: no direct attempt made"
    try:
        conn = await AsyncConnection.connect(conninfo, connect_timeout=PROBE_TIMEOUT)
    except psycopg.Error as exc:
        return safe_text(exc, conninfo)
    await conn.close()
    return None


@contextlib.asynccontextmanager
async def pooled(
    pool: AsyncConnectionPool[Any],
    *,
    unavailable: Callable[[str], Exception],
    exhausted: Callable[[str], Exception],
) -> AsyncIterator[AsyncConnection[Any]]:
    """A connection from `pool` (committed on success, rolled back on error, as the pool's
    own): a lost server raises ``unavailable(message)``, a pool whose every connection stayed
    in use ``exhausted(message)``; errors of statements are the caller's to handle."""
    where = describe_url(_conninfo(pool)) if _conninfo(pool) else pool.name
    acquired = False
    try:
        async with pool.connection() as conn:
            acquired = True
            try:
                yield conn
            except psycopg.Error as exc:
                if not connection_lost(exc, conn):
                    raise
                raise unavailable(
                    f"PostgreSQL at {where} cannot be reached: the connection was lost"
                    f" ({safe_text(exc, _conninfo(pool))})"
                ) from None
    except PoolTimeout:
        if acquired:  # a timeout of the caller's own (another pool, inside the block)
            raise
        stats = pool.get_stats()
        in_use = stats.get("pool_size", 0) - stats.get("pool_available", 0)
        if in_use < pool.max_size:  # the pool could not open the connections it lacked
            reason = await _unreachable_reason(pool) or "it accepts connections again now"
            raise unavailable(
                f"PostgreSQL at {where} cannot be reached: no connection could be opened within"
                f" {pool.timeout:g} s ({reason})"
            ) from None
        raise exhausted(
            f"no PostgreSQL connection free at {where} within {pool.timeout:g} s:"
            f" all {pool.max_size} pooled connections stayed in use"
        ) from None
