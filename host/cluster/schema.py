"""The cluster's tables in PostgreSQL (next to the memory store's), versioned like the store's.

- ``cluster_rooms``: one row per (agent, room): its backlog (``pending``), its arrival counter
  (``last_seq``), the worker holding it, the lease end and the fencing token (``fence``, raised by
  every claim, so a worker that lost the room cannot commit);
- ``cluster_messages``: every message taken at ingress, in arrival order per room (``room_seq``),
  its status (``pending``, ``done``, ``parked``), tries, last error and the reply (the API process
  reads it there when NATS did not bring it); a message sent with an ``Idempotency-Key`` keeps the
  key and the ``fingerprint`` of its body (the same key with another body is refused), and the
  token of the commit that ended it (``committed_by``; a room claimed in a commit keeps that
  commit's token in ``claimed_by``): a worker whose commit lost its answer recognises its own;
  answered messages are purged ``cluster.retention`` after their end (`RoomQueue.purge`);
- ``cluster_workers``: the processes of the cluster, their heartbeat and counters;
- ``cluster_outbox``: cluster events committed and not yet sent on NATS (`host.cluster.outbox`).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

__all__ = ["migrate"]

_LOCK_KEY = 0x61676E63  # "agnc": serialises the cluster's migrations

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
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
    (
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
    (
        3,
        "fingerprint of a keyed message",
        """
        ALTER TABLE cluster_messages ADD COLUMN fingerprint text;
        """,
    ),
    (
        4,
        "tokens of a commit (a commit whose answer was lost is recognised)",
        """
        ALTER TABLE cluster_messages ADD COLUMN committed_by uuid;
        ALTER TABLE cluster_rooms ADD COLUMN claimed_by uuid;
        """,
    ),
    (
        5,
        "done messages by their end (the retention's purge)",
        """
        CREATE INDEX cluster_messages_done ON cluster_messages (done_at) WHERE status = 'done';
        """,
    ),
)


async def migrate(conn: AsyncConnection[Any]) -> None:
    """Create or upgrade the cluster tables (once, whichever process starts first)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS cluster_schema ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM cluster_schema")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        for version, description, statements in MIGRATIONS:
            if version > current:
                await conn.execute(sql.SQL(statements))
                await conn.execute(
                    "INSERT INTO cluster_schema (version, description) VALUES (%s, %s)",
                    (version, description),
                )
