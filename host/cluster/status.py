"""What ``GET /cluster`` shows (`cluster_status`): members, rooms held, backlog, parked messages.

Read-only queries over the queue's tables, kept apart from `RoomQueue`'s writes; one step a query.
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["cluster_status"]


async def cluster_status(
    conn: psycopg.AsyncConnection[Any], node: str, alive_within: float
) -> dict[str, Any]:
    """The cluster as `node` sees it (a member is alive if seen within `alive_within` s)."""
    members = await _members(conn, alive_within)
    cursor = await conn.execute(
        "SELECT COALESCE(sum(pending), 0), count(*) FILTER (WHERE pending > 0),"
        " count(*) FILTER (WHERE holder IS NOT NULL"
        " AND lease_until > clock_timestamp()), COALESCE(sum(redeliveries), 0)"
        " FROM cluster_rooms"
    )
    row = await cursor.fetchone()
    assert row is not None
    parked = await _recent_parked(conn)
    cursor = await conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'parked'),"
        " count(*) FILTER (WHERE status = 'done') FROM cluster_messages"
    )
    counts = await cursor.fetchone()
    assert counts is not None
    return {
        "node": node,
        "members": members,
        "queue_depth": int(row[0]),
        "rooms_waiting": int(row[1]),
        "rooms_held": int(row[2]),
        "redeliveries": int(row[3]),
        "parked": int(counts[0]),
        "done": int(counts[1]),
        "recent_parked": parked,
    }


async def _members(conn: psycopg.AsyncConnection[Any], alive_within: float) -> list[dict[str, Any]]:
    """Every member with its counters, the rooms it holds and whether it is alive."""
    cursor = await conn.execute(
        "SELECT w.id, w.role, w.host, w.pid, w.started_at, w.seen_at, w.stopped_at,"
        " w.processed, w.failed, w.fenced, w.takeovers,"
        " (SELECT count(*) FROM cluster_rooms r WHERE r.holder = w.id"
        "  AND r.lease_until > clock_timestamp()),"
        " w.stopped_at IS NULL AND w.seen_at > now() - make_interval(secs => %s)"
        " FROM cluster_workers w ORDER BY w.started_at",
        (alive_within,),
    )
    return [
        {
            "id": r[0],
            "role": r[1],
            "host": r[2],
            "pid": r[3],
            "started_at": r[4].isoformat(),
            "seen_at": r[5].isoformat(),
            "stopped_at": r[6].isoformat() if r[6] else None,
            "processed": r[7],
            "failed": r[8],
            "fenced": r[9],
            "takeovers": r[10],
            "rooms_held": r[11],
            "alive": bool(r[12]),
        }
        for r in await cursor.fetchall()
    ]


async def _recent_parked(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """The 20 messages parked last."""
    cursor = await conn.execute(
        "SELECT id, agent_id, room_id, tries, error, created_at FROM cluster_messages"
        " WHERE status = 'parked' ORDER BY created_at DESC LIMIT 20"
    )
    return [
        {
            "id": str(p[0]),
            "agent_id": str(p[1]),
            "room_id": str(p[2]),
            "tries": p[3],
            "error": p[4],
            "created_at": p[5].isoformat(),
        }
        for p in await cursor.fetchall()
    ]
