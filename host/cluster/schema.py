"""The cluster's tables in PostgreSQL (next to the memory store's), versioned like the store's.

- ``cluster_rooms``: one row per (agent, room): its backlog (``pending``), its arrival counter
  (``last_seq``), the worker holding it, the lease end and the fencing token (``fence``, raised by
  every claim, so a worker that lost the room cannot commit);
- ``cluster_messages``: every message taken at ingress, in arrival order per room (``room_seq``),
  its status (``pending``, ``done``, ``parked``), tries, last error and the reply (the API process
  reads it there when NATS did not bring it); a message sent with an ``Idempotency-Key`` keeps the
  key and the ``fingerprint`` of its body (the same key with another body is refused), and the
  token of the commit that ended it (``committed_by``; a room claimed in a commit keeps that
  commit's token in ``claimed_by``, the outbox rows it wrote in ``token``): a worker whose
  commit lost its answer recognises its own;
  answered messages are purged ``cluster.retention`` after their end (`RoomQueue.purge`);
- ``cluster_workers``: the processes of the cluster, their heartbeat and counters;
- ``cluster_outbox``: cluster events committed and not yet sent on NATS (`host.cluster.outbox`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import psycopg
from loguru import logger
from psycopg import AsyncConnection, sql

__all__ = ["MIGRATIONS", "Migration", "migrate"]

_log = logger.bind(component="cluster")

_LOCK_KEY = 0x61676E63  # "agnc": serialises the cluster's migrations

LOCK_TIMEOUT = 2.0
"""Seconds a migration waits for a table lock before it gives up, rolls back and tries again
(`LOCK_TRIES` times): while it waits, every query of that table queues behind it."""
LOCK_TRIES = 30


@dataclass(frozen=True)
class Migration:
    """One step of the schema, committed on its own (its version row with it). `locks`: the
    tables it locks ACCESS EXCLUSIVE first, in the workers' order (a room's row, then its
    messages, then the outbox), so that it never holds one a worker's transaction waits for
    while it waits for another that worker holds. `index`: the index its one ``CREATE INDEX
    CONCURRENTLY IF NOT EXISTS`` statement builds, outside a transaction (writes go on
    during the build; an INVALID one left by a build that died is dropped first)."""

    version: int
    description: str
    statements: str
    locks: tuple[str, ...] = ()
    index: str | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "room queue, messages, workers",
        """
        CREATE TABLE cluster_rooms (
            agent_id uuid NOT NULL,
            room_id uuid NOT NULL,
            pending integer NOT NULL DEFAULT 0,
            last_seq bigint NOT NULL DEFAULT 0,
            holder text,
            fence bigint NOT NULL DEFAULT 0,
            lease_until timestamptz,
            redeliveries bigint NOT NULL DEFAULT 0,
            waiting_since timestamptz,
            PRIMARY KEY (agent_id, room_id)
        );
        CREATE INDEX cluster_rooms_ready ON cluster_rooms (waiting_since) WHERE pending > 0;
        CREATE TABLE cluster_messages (
            id uuid PRIMARY KEY,
            agent_id uuid NOT NULL,
            room_id uuid NOT NULL,
            room_seq bigint NOT NULL,
            idem_key text,
            message text NOT NULL,
            stream boolean NOT NULL DEFAULT false,
            origin text,
            status text NOT NULL DEFAULT 'pending',
            tries integer NOT NULL DEFAULT 0,
            error text,
            reply text,
            worker text,
            fence bigint,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            done_at timestamptz,
            UNIQUE (agent_id, room_id, room_seq)
        );
        CREATE INDEX cluster_messages_pending ON cluster_messages (agent_id, room_id, room_seq)
            WHERE status = 'pending';
        CREATE INDEX cluster_messages_parked ON cluster_messages (created_at)
            WHERE status = 'parked';
        CREATE TABLE cluster_workers (
            id text PRIMARY KEY,
            role text NOT NULL,
            host text NOT NULL,
            pid integer NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            seen_at timestamptz NOT NULL DEFAULT now(),
            stopped_at timestamptz,
            processed bigint NOT NULL DEFAULT 0,
            failed bigint NOT NULL DEFAULT 0,
            fenced bigint NOT NULL DEFAULT 0,
            takeovers bigint NOT NULL DEFAULT 0
        );
        """,
    ),
    Migration(
        2,
        "outbox of cluster events",
        """
        CREATE TABLE cluster_outbox (
            seq bigserial PRIMARY KEY,
            origin text NOT NULL,
            subject text NOT NULL,
            data bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        """,
    ),
    Migration(
        3,
        "fingerprint of a keyed message",
        """
        ALTER TABLE cluster_messages ADD COLUMN fingerprint text;
        """,
    ),
    Migration(
        4,
        "tokens of a commit (a commit whose answer was lost is recognised)",
        """
        ALTER TABLE cluster_rooms ADD COLUMN claimed_by uuid;
        ALTER TABLE cluster_messages ADD COLUMN committed_by uuid;
        ALTER TABLE cluster_outbox ADD COLUMN token uuid;
        """,
        locks=("cluster_rooms", "cluster_messages", "cluster_outbox"),
    ),
    Migration(
        5,
        "done messages by their end (the retention's purge)",
        """
        CREATE INDEX CONCURRENTLY IF NOT EXISTS cluster_messages_done ON cluster_messages (done_at)
            WHERE status = 'done'
        """,
        index="cluster_messages_done",
    ),
)


async def migrate(conn: AsyncConnection[Any], *, upto: int | None = None) -> None:
    """Create or upgrade the cluster tables (once, whichever process starts first), to version
    `upto` (None: the last).

    One migration per transaction (an index build never runs under another migration's
    locks), under a session advisory lock taken by polling: a process waiting for it holds no
    snapshot, which a concurrent index build would wait for. A migration that cannot take its
    locks within `LOCK_TIMEOUT` (or is chosen as a deadlock's victim) is rolled back and tried
    again, `LOCK_TRIES` times at most, so running workers are never held for long."""
    await conn.commit()
    autocommit = conn.autocommit
    await conn.set_autocommit(True)
    try:
        while True:
            if await _try_lock(conn):
                break
            await asyncio.sleep(0.1)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS cluster_schema ("
                " version integer PRIMARY KEY, description text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = await _version(conn)
            for step in MIGRATIONS:
                if current < step.version <= (upto if upto is not None else step.version):
                    await _apply(conn, step)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    finally:
        await conn.set_autocommit(autocommit)


async def _try_lock(conn: AsyncConnection[Any]) -> bool:
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,))
    row = await cursor.fetchone()
    return bool(row and row[0])


async def _version(conn: AsyncConnection[Any]) -> int:
    cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM cluster_schema")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _apply(conn: AsyncConnection[Any], step: Migration) -> None:
    """Run `step` (on an autocommit connection) and record it."""
    if step.index is not None:
        await _drop_invalid(conn, step.index)
        await conn.execute(sql.SQL(step.statements))
        await _record(conn, step)
        return
    for attempt in range(1, LOCK_TRIES + 1):
        try:
            async with conn.transaction():
                await conn.execute(
                    sql.SQL("SET LOCAL lock_timeout = {}").format(
                        sql.Literal(f"{int(LOCK_TIMEOUT * 1000)}ms")
                    )
                )
                if step.locks:
                    await conn.execute(
                        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                            sql.SQL(", ").join(sql.Identifier(t) for t in step.locks)
                        )
                    )
                await conn.execute(sql.SQL(step.statements))
                await _record(conn, step)
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            if attempt == LOCK_TRIES:
                raise
            _log.warning(
                "cluster schema {}: tables busy ({}); trying again (try {} of {})",
                step.version,
                type(exc).__name__,
                attempt,
                LOCK_TRIES,
            )
            await asyncio.sleep(min(0.1 * attempt, 1.0))


async def _record(conn: AsyncConnection[Any], step: Migration) -> None:
    await conn.execute(
        "INSERT INTO cluster_schema (version, description) VALUES (%s, %s)",
        (step.version, step.description),
    )


async def _drop_invalid(conn: AsyncConnection[Any], name: str) -> None:
    """Drop index `name` if a build that died half-way left it INVALID (``IF NOT EXISTS``
    would keep it so)."""
    cursor = await conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
        (name,),
    )
    row = await cursor.fetchone()
    if row is not None and not row[0]:
        await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY {}").format(sql.Identifier(name)))
