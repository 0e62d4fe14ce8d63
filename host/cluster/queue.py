"""`RoomQueue`: the cluster's work queue on PostgreSQL, one lane per (agent, room).

Ingress (`enqueue`) raises the room's backlog and arrival counter in one upsert of its
``cluster_rooms`` row (the row lock orders concurrent arrivals: a message's ``room_seq`` is its
commit order) and stores the message; its id is unique, so a message sent twice is stored once.

A worker `claim`s a room with ``FOR UPDATE SKIP LOCKED`` (no two workers block on one room), which
sets it as holder for ``lease`` seconds and raises the room's fencing token. It takes the room's
messages in ``room_seq`` order (`next_message` counts a try first, so a message that kills its
worker is parked after ``max_tries``), and `commit`s each: the memories it wrote, its reply and
the room's progress in one transaction that first checks, under the room's row lock, that the
token is still the worker's. A worker that was paused or cut off past its lease, whose room was
claimed by another meanwhile, cannot commit: `Fenced`.

The records it hands out are in host/cluster/records.py, the read-only
``GET /cluster`` queries in host/cluster/status.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from contracts.memory import Memory
from contracts.storage import PooledStore

from .records import (
    TAKEN_COLUMNS,
    Abandoned,
    Backlogged,
    Claim,
    Committed,
    Enqueued,
    Fenced,
    OutboxEntry,
    Outcome,
    QueuedMessage,
    queued_row,
)
from .schema import migrate
from .status import cluster_status
from .unit import Unit

__all__ = ["RoomQueue", "default_node_id"]

COUNTERS = ("processed", "failed", "fenced", "takeovers")

ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"
"""For the queue's bookkeeping (claims, tries, leases, releases, heartbeats): PostgreSQL does not
wait for the disk before answering. A crash may lose the last of these commits, and that is
safe: a lost claim leaves the room's token and holder as they were, so its worker's commit is
refused (`Fenced`) and the room is claimed again; a lost try count allows one more try before
parking; a lost lease renewal or release ends with the lease. Ingress and `commit` (a message's
effects and its end) wait for the disk as usual."""


PURGE_LOCK = 0x61677072  # "agpr"
"""The advisory lock (transaction level) each batch of `RoomQueue.purge` takes with
``pg_try_advisory_xact_lock``: one member purges at a time; the others skip their turn rather
than delete the same rows at once."""

OLDEST_PENDING = (
    "FROM cluster_messages WHERE agent_id = %s AND room_id = %s AND status = 'pending'"
    " ORDER BY room_seq LIMIT 1"
)
"""The room's oldest waiting message (its agent and room as parameters): the one a worker
takes next (`RoomQueue._next_query`, counting a try) or reads back (`RoomQueue._oldest`)."""

PIPELINE_BELOW = 64
"""A commit writing fewer memories than this runs in pipeline mode; the postgres store writes
larger batches with COPY (its ``COPY_FROM``), which cannot run in a pipeline."""


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


class RoomQueue:
    """The queue over the memory store's database (one pool for both, see the module doc)."""

    def __init__(self, store: PooledStore, node_id: str, *, lease: float) -> None:
        self.store = store
        self.node_id = node_id
        self.lease = lease
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        """This member's counters, written to its ``cluster_workers`` row by `heartbeat` (not in
        each message's transaction)."""

    async def migrate(self) -> None:
        async with self.store.with_connection() as conn:
            await migrate(conn)

    # ------------------------------------------------------------------ ingress

    async def enqueue(
        self,
        message: Memory,
        *,
        idem_key: str | None,
        fingerprint: str | None = None,
        origin: str | None,
        stream: bool,
        limit: int,
        retry_after: int,
    ) -> Enqueued:
        """Take `message` for its room (or find it taken already); `Backlogged` when full.

        One statement: the room's row raises its backlog and arrival counter (its row lock
        orders concurrent arrivals) and the message is stored with that number and the
        database's time taken under the lock (the room's messages are stored in arrival order
        whichever API process took them); a full room's row is left as it was and nothing is
        stored. A message taken already (its id is the primary key) is a duplicate: its stored
        `fingerprint` comes back for the caller to compare (the same ``Idempotency-Key`` with
        another body). BEGIN, the statement and COMMIT go in one round trip (pipeline mode):
        the room's row is locked for no longer than the commit. A duplicate whose row is gone
        when it is read (purged in between: its retention ran out) is taken again, once, as
        new."""
        for last in (False, True):
            try:
                stored = await self._insert(message, idem_key, fingerprint, origin, stream, limit)
            except psycopg.errors.UniqueViolation:
                # taken already (a client's retry, or the same message sent twice at once)
                found = await self._stored(message.id)
                if found is None and not last:
                    continue  # purged since the insert failed: a new message now
                return _duplicate(message.id, found, limit, retry_after)
            if stored is None:  # the room is full (its row unchanged); taken before it filled?
                return _duplicate(message.id, await self._stored(message.id), limit, retry_after)
            break
        return Enqueued(message.id, duplicate=False)

    async def _insert(
        self,
        message: Memory,
        idem_key: str | None,
        fingerprint: str | None,
        origin: str | None,
        stream: bool,
        limit: int,
    ) -> Any:
        """The ingress statement (see `enqueue`): the stored row's ``room_seq``, None when the
        room is full; `UniqueViolation` when the message was taken already."""
        async with self.store.with_connection() as conn:
            async with conn.pipeline(), conn.transaction():
                cursor = await conn.execute(
                    "WITH r AS (INSERT INTO cluster_rooms AS r (agent_id, room_id, pending,"
                    " last_seq, waiting_since) VALUES (%s, %s, 1, 1, clock_timestamp())"
                    " ON CONFLICT (agent_id, room_id) DO UPDATE SET pending = r.pending + 1,"
                    " last_seq = r.last_seq + 1,"
                    " waiting_since = COALESCE(r.waiting_since, clock_timestamp())"
                    " WHERE r.pending < %s"
                    " RETURNING last_seq, clock_timestamp() AS at)"
                    " INSERT INTO cluster_messages (id, agent_id, room_id, room_seq, idem_key,"
                    " fingerprint, message, stream, origin, created_at)"
                    " SELECT %s, %s, %s, r.last_seq, %s, %s, %s, %s, %s, r.at FROM r"
                    " RETURNING room_seq",
                    (
                        message.agent_id,
                        message.room_id,
                        limit,
                        message.id,
                        message.agent_id,
                        message.room_id,
                        idem_key,
                        fingerprint,
                        message.model_dump_json(),
                        stream,
                        origin,
                    ),
                )
            # COMMIT was queued; the pipeline's end sent it and read every answer
            return await cursor.fetchone()

    async def _stored(self, message_id: UUID) -> tuple[str | None] | None:
        """The stored message's fingerprint (in a tuple); None when it is not stored."""
        async with self.store.with_connection() as conn:
            cursor = await conn.execute(
                "SELECT fingerprint FROM cluster_messages WHERE id = %s", (message_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else (row[0],)

    async def outcomes(self, ids: Sequence[UUID]) -> list[Outcome]:
        """The ends of those of `ids` that ended (the API's fallback when NATS is quiet)."""
        if not ids:
            return []
        async with self.store.with_connection() as conn:
            cursor = await conn.execute(
                "SELECT id, status, reply, error FROM cluster_messages"
                " WHERE id = ANY(%s) AND status <> 'pending'",
                (list(ids),),
            )
            rows = await cursor.fetchall()
        return [Outcome(UUID(str(r[0])), r[1], r[2], r[3]) for r in rows]

    # ------------------------------------------------------------------ worker side

    async def claim(self, agents: Sequence[UUID], token: UUID | None = None) -> Claim | None:
        """Hold a room with messages waiting that nobody holds (or whose lease ran out), and
        take its oldest message (`Claim.first`) in the same transaction. The room keeps
        `token` in ``claimed_by``: when the answer is lost, `claimed` finds what it held."""
        async with self.store.with_connection() as conn:
            async with conn.pipeline(), conn.transaction():  # one round trip, COMMIT included
                await conn.execute(ASYNC_COMMIT)
                cursor = await self._claim_query(conn, agents, token=token)
            return self._claimed(await cursor.fetchone())

    async def claimed(self, token: UUID) -> Claim | None:
        """The room a `claim` under `token` holds, if it landed (its connection dropped before
        the answer came back), with its oldest waiting message, which that claim took; None if
        it is not seen: it did not land, or (a half-open connection) it is still running on
        the server, whose room then waits out its lease as any room left held. Whether that
        claim took the room over from another worker cannot be read back (`Claim.takeover`
        is False: the takeover is not counted)."""
        async with self.store.with_connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT agent_id, room_id, fence FROM cluster_rooms"
                " WHERE claimed_by = %s AND holder = %s",
                (token, self.node_id),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            agent_id, room_id = UUID(str(row[0])), UUID(str(row[1]))
            first = await _queued(await self._oldest(conn, agent_id, room_id))
            return Claim(agent_id, room_id, int(row[2]), False, first)

    async def _claim_query(
        self,
        conn: psycopg.AsyncConnection[Any],
        agents: Sequence[UUID],
        after: Claim | None = None,
        token: UUID | None = None,
    ) -> psycopg.AsyncCursor[Any]:
        """The claim statement; `after` (a room this transaction has just committed to):
        only if that room was let go in it (its row shows no holder), so that a worker
        holds one room more only for a room it gave up. The room keeps `token` (the
        commit's, see `landed`) in ``claimed_by``."""
        let_go = (
            " AND EXISTS (SELECT 1 FROM cluster_rooms g WHERE g.agent_id = %s"
            " AND g.room_id = %s AND g.holder IS NULL)"
            if after is not None
            else ""
        )
        params: list[Any] = [list(agents)]
        if after is not None:
            params += [after.agent_id, after.room_id]
        return await conn.execute(
            "WITH c AS (SELECT agent_id, room_id, holder FROM cluster_rooms"
            " WHERE pending > 0 AND agent_id = ANY(%s)"
            " AND (holder IS NULL OR lease_until < clock_timestamp())"
            f"{let_go} ORDER BY waiting_since LIMIT 1 FOR UPDATE SKIP LOCKED),"
            " r AS (UPDATE cluster_rooms r SET holder = %s, fence = r.fence + 1, claimed_by = %s,"
            " lease_until = clock_timestamp() + make_interval(secs => %s),"
            " redeliveries = r.redeliveries + (c.holder IS NOT NULL)::int"
            " FROM c WHERE r.agent_id = c.agent_id AND r.room_id = c.room_id"
            " RETURNING r.agent_id, r.room_id, r.fence, c.holder),"
            " m AS (UPDATE cluster_messages SET tries = tries + 1, worker = %s"
            " WHERE id = (SELECT q.id FROM cluster_messages q, c WHERE q.agent_id = c.agent_id"
            " AND q.room_id = c.room_id AND q.status = 'pending' ORDER BY q.room_seq LIMIT 1)"
            f" RETURNING {TAKEN_COLUMNS})"
            " SELECT r.agent_id, r.room_id, r.fence, r.holder, m.* FROM r LEFT JOIN m ON true",
            (*params, self.node_id, token, self.lease, self.node_id),
        )

    def _claimed(self, row: Any) -> Claim | None:
        if row is None:
            return None
        takeover = row[3] is not None
        if takeover:
            self.counts["takeovers"] += 1
        first = queued_row(row[4:])
        return Claim(UUID(str(row[0])), UUID(str(row[1])), int(row[2]), takeover, first)

    async def next_message(self, claim: Claim) -> QueuedMessage | None:
        """The room's oldest waiting message, its try counted; None when the room is empty.
        `Fenced` when the room is no longer this worker's."""
        async with self.store.with_connection() as conn, conn.transaction():
            await conn.execute(ASYNC_COMMIT)
            await self._check_fence(conn, claim)
            return await self._take_next(conn, claim)

    async def _take_next(
        self, conn: psycopg.AsyncConnection[Any], claim: Claim
    ) -> QueuedMessage | None:
        return await _queued(await self._next_query(conn, claim))

    async def _next_query(
        self, conn: psycopg.AsyncConnection[Any], claim: Claim
    ) -> psycopg.AsyncCursor[Any]:
        return await conn.execute(
            "UPDATE cluster_messages SET tries = tries + 1, worker = %s"
            f" WHERE id = (SELECT id {OLDEST_PENDING}) RETURNING {TAKEN_COLUMNS}",
            (self.node_id, claim.agent_id, claim.room_id),
        )

    async def _check_fence(self, conn: psycopg.AsyncConnection[Any], claim: Claim) -> None:
        """Lock the room's row and check it is still held under `claim`'s token."""
        await self._fence_check(await self._fence_query(conn, claim), claim)

    async def _fence_query(
        self, conn: psycopg.AsyncConnection[Any], claim: Claim
    ) -> psycopg.AsyncCursor[Any]:
        return await conn.execute(
            "SELECT fence, holder FROM cluster_rooms WHERE agent_id = %s AND room_id = %s"
            " FOR UPDATE",
            (claim.agent_id, claim.room_id),
        )

    async def _fence_check(self, cursor: psycopg.AsyncCursor[Any], claim: Claim) -> None:
        row = await cursor.fetchone()
        if row is None or int(row[0]) != claim.fence or row[1] != self.node_id:
            holder = row[1] if row is not None else None
            raise Fenced(
                f"room {claim.room_id} was taken over (token {claim.fence} is stale; "
                f"now held by {holder})"
            )

    async def commit(
        self,
        claim: Claim,
        message: QueuedMessage,
        unit: Unit,
        reply: str,
        *,
        take_next: bool = True,
        claim_from: Sequence[UUID] = (),
        token: UUID | None = None,
    ) -> Committed:
        """Commit a processed message: what its `unit` wrote (memories created, updated,
        deleted, its cluster events into the outbox), its reply and the room's progress, in one
        transaction under the room's fencing token (`Fenced`: nothing written).

        With `take_next`, the same transaction takes the room's next message (its try counted)
        or, when there is none, lets the room go and, with `claim_from` (agent ids), claims
        another room for the worker (`Committed.claimed`, as `claim` would); one transaction
        per message whether a room has a backlog or not. The message and the room claimed
        keep `token` (this commit's): a commit whose answer was lost with its connection is
        recognised by it (`commit_again`)."""
        # pipeline mode: BEGIN, the statements and COMMIT go without waiting for each answer;
        # the answers are read once the store's writes have synced (its dimension lock needs
        # one answer); a fence found stale raises before COMMIT, so nothing is written. COPY
        # (large batches of memories) cannot run in a pipeline
        pipelined = len(unit.memories) < PIPELINE_BELOW
        try:
            async with (
                self.store.with_connection() as conn,
                conn.pipeline() if pipelined else contextlib.nullcontext(),
                conn.transaction(),
            ):
                fence = await self._fence_query(conn, claim)  # the room's row locked first
                ended = await self._end_query(conn, claim, message.id, "done", reply, None, token)
                taking = await self._next_query(conn, claim) if take_next else None
                room = await self._room_done(conn, claim, release=take_next)
                claiming = (
                    await self._claim_query(conn, claim_from, after=claim, token=token)
                    if take_next and claim_from
                    else None
                )
                sending = await self._outbox_query(conn, unit.outbox, token)
                # last: the store locks its table's row (the embedding dimension) until the
                # commit
                await self.store.create_missing_on(conn, unit.memories)
                if unit.updates:
                    await self.store.update_on(conn, unit.updates)
                if unit.deletes:
                    await self.store.delete_on(conn, unit.deletes)
                await self._fence_check(fence, claim)
                _check_ended(ended, message.id)
                following = await _queued(taking) if taking is not None else None
                released = await _released(room)
                claimed = self._claimed(await claiming.fetchone()) if claiming else None
                sent = await _sent(sending)
        except Fenced:
            self.counts["fenced"] += 1
            raise
        self.counts["processed"] += 1
        return Committed(following, released, sent, claimed)

    async def commit_again(
        self,
        claim: Claim,
        message: QueuedMessage,
        unit: Unit,
        reply: str,
        *,
        token: UUID,
        take_next: bool = True,
        claim_from: Sequence[UUID] = (),
    ) -> Committed:
        """`commit` once more after its connection was lost (same arguments, same `token`):
        when the first one landed (PostgreSQL committed it, its answer was lost), what it did
        (`landed`, `Committed.landed`); else the commit, afresh."""
        done = await self.landed(claim, message.id, token, take_next=take_next)
        if done is not None:
            return done
        return await self.commit(
            claim, message, unit, reply, take_next=take_next, claim_from=claim_from, token=token
        )

    async def landed(
        self, claim: Claim, message_id: UUID, token: UUID, *, take_next: bool = True
    ) -> Committed | None:
        """What the commit of `message_id` under `token` did, if it landed; None if it did
        not (nothing of it was written).

        The room's row is locked first: a commit whose connection was lost may still be
        running on the server, and it holds that lock until it commits or rolls back. Then:
        the room's next message, which that commit took (its try counted) when it kept the
        room; the room it claimed (its row keeps the token) with its oldest message, which
        that claim took; the outbox rows it wrote (their ``token``), for the worker to send
        at once as after any commit (those the relay loop sent meanwhile are gone).

        The wait for that lock lasts one `lease` at most (``lock_timeout``): a commit still
        holding it on a half-open connection may keep it until the server notices; then
        `Abandoned` (the room's lease is left to end, another worker takes it over)."""
        async with self.store.with_connection() as conn, conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(
                    sql.Literal(f"{max(1, int(self.lease * 1000))}ms")
                )
            )
            try:
                room = await self._fence_query(conn, claim)  # waits for that commit to end
                kept = await room.fetchone()
            except psycopg.errors.LockNotAvailable:
                raise Abandoned(
                    f"room {claim.room_id}: its row stayed locked {self.lease:g} s after the"
                    f" commit of message {message_id} lost its connection (is it still"
                    " running?); its lease is left to end"
                ) from None
            cursor = await conn.execute(
                "SELECT committed_by FROM cluster_messages WHERE id = %s", (message_id,)
            )
            row = await cursor.fetchone()
            if row is None or row[0] != token:
                return None
            released = kept is None or int(kept[0]) != claim.fence or kept[1] != self.node_id
            following = None
            if take_next and not released:
                following = await _queued(await self._oldest(conn, claim.agent_id, claim.room_id))
            claimed = None
            cursor = await conn.execute(
                "SELECT agent_id, room_id, fence FROM cluster_rooms"
                " WHERE claimed_by = %s AND holder = %s",
                (token, self.node_id),
            )
            other = await cursor.fetchone()
            if other is not None:
                agent_id, room_id = UUID(str(other[0])), UUID(str(other[1]))
                first = await _queued(await self._oldest(conn, agent_id, room_id))
                claimed = Claim(agent_id, room_id, int(other[2]), False, first)
            cursor = await conn.execute(
                "SELECT seq, subject, data FROM cluster_outbox WHERE token = %s ORDER BY seq",
                (token,),
            )
            sent = await _sent(cursor)
        self.counts["processed"] += 1
        return Committed(following, released, sent, claimed, landed=True)

    async def _oldest(
        self, conn: psycopg.AsyncConnection[Any], agent_id: UUID, room_id: UUID
    ) -> psycopg.AsyncCursor[Any]:
        """The room's oldest waiting message, as taken (no try counted)."""
        return await conn.execute(f"SELECT {TAKEN_COLUMNS} {OLDEST_PENDING}", (agent_id, room_id))

    async def _outbox_query(
        self,
        conn: psycopg.AsyncConnection[Any],
        entries: Sequence[OutboxEntry],
        token: UUID | None = None,
    ) -> psycopg.AsyncCursor[Any] | None:
        """Write `entries` to the outbox; the rows keep `token` (a message's commit's, read
        back by `landed`)."""
        if not entries:
            return None
        return await conn.execute(
            "INSERT INTO cluster_outbox (origin, token, subject, data)"
            " SELECT %s, %s, s, d FROM unnest(%s::text[], %s::bytea[]) AS e(s, d)"
            " RETURNING seq, subject, data",
            (self.node_id, token, [e[0] for e in entries], [e[1] for e in entries]),
        )

    async def _outbox_on(
        self, conn: psycopg.AsyncConnection[Any], entries: Sequence[OutboxEntry]
    ) -> list[tuple[int, str, bytes]]:
        return await _sent(await self._outbox_query(conn, entries))

    async def outbox_relay(
        self, published: Sequence[int], stale: float, busy: Sequence[int] = (), limit: int = 500
    ) -> list[tuple[int, str, bytes]]:
        """Forget the rows `published` (sent by their process), then take the rows to send
        again: this process's (but those `busy`, being sent now), and any older than `stale` s
        (a process that died before sending its own). The caller sends them, then
        `outbox_done`."""
        async with self.store.with_connection() as conn, conn.transaction():
            if published:
                await conn.execute(
                    "DELETE FROM cluster_outbox WHERE seq = ANY(%s)", (list(published),)
                )
            cursor = await conn.execute(
                "SELECT seq, subject, data FROM cluster_outbox WHERE (origin = %s"
                " OR created_at < clock_timestamp() - make_interval(secs => %s))"
                " AND seq <> ALL(%s) ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
                (self.node_id, stale, list(busy), limit),
            )
            return [(int(r[0]), r[1], bytes(r[2])) for r in await cursor.fetchall()]

    async def outbox_done(self, seqs: Sequence[int]) -> None:
        if seqs:
            async with self.store.with_connection() as conn:
                await conn.execute("DELETE FROM cluster_outbox WHERE seq = ANY(%s)", (list(seqs),))

    async def outbox_put(self, entries: Sequence[OutboxEntry]) -> list[tuple[int, str, bytes]]:
        """Store cluster events raised outside a message's unit (sent by `Outbox`)."""
        async with self.store.with_connection() as conn, conn.transaction():
            return await self._outbox_on(conn, entries)

    async def fail(self, claim: Claim, message: QueuedMessage, error: str, max_tries: int) -> bool:
        """Record a failed try; park the message once it has had `max_tries`. True if parked."""
        async with self.store.with_connection() as conn, conn.transaction():
            await self._check_fence(conn, claim)
            self.counts["failed"] += 1
            if message.tries < max_tries:
                await conn.execute(
                    "UPDATE cluster_messages SET error = %s WHERE id = %s", (error, message.id)
                )
                return False
            await self._park(conn, claim, message.id, error)
            return True

    async def park(self, claim: Claim, message: QueuedMessage, error: str) -> None:
        """Park `message` without trying it (it already had its tries: its workers died)."""
        async with self.store.with_connection() as conn, conn.transaction():
            await self._check_fence(conn, claim)
            await self._park(conn, claim, message.id, error)

    async def _park(
        self, conn: psycopg.AsyncConnection[Any], claim: Claim, message_id: UUID, error: str
    ) -> None:
        """End the message as parked with `error`: one message fewer in the room, kept held."""
        ended = await self._end_query(conn, claim, message_id, "parked", None, error)
        _check_ended(ended, message_id)
        await self._room_done(conn, claim, release=False)

    async def _end_query(
        self,
        conn: psycopg.AsyncConnection[Any],
        claim: Claim,
        message_id: UUID,
        status: str,
        reply: str | None,
        error: str | None,
        token: UUID | None = None,
    ) -> psycopg.AsyncCursor[Any]:
        return await conn.execute(
            "UPDATE cluster_messages SET status = %s, reply = %s, error = COALESCE(%s, error),"
            " fence = %s, committed_by = %s, done_at = clock_timestamp()"
            " WHERE id = %s AND status = 'pending'",
            (status, reply, error, claim.fence, token, message_id),
        )

    async def _room_done(
        self, conn: psycopg.AsyncConnection[Any], claim: Claim, *, release: bool
    ) -> psycopg.AsyncCursor[Any]:
        """One message fewer in the room; its lease extended or, with `release` and no other
        message waiting, the room let go (none can arrive meanwhile: ingress needs the row
        lock this transaction holds). Returns whether it was let go."""
        return await conn.execute(
            "UPDATE cluster_rooms SET pending = pending - 1,"
            " waiting_since = CASE WHEN pending > 1 THEN clock_timestamp() END,"
            " holder = CASE WHEN %(release)s AND pending <= 1 THEN NULL ELSE holder END,"
            " lease_until = CASE WHEN %(release)s AND pending <= 1 THEN NULL"
            " ELSE clock_timestamp() + make_interval(secs => %(lease)s) END"
            " WHERE agent_id = %(agent)s AND room_id = %(room)s RETURNING holder IS NULL",
            {
                "release": release,
                "lease": self.lease,
                "agent": claim.agent_id,
                "room": claim.room_id,
            },
        )

    async def release(self, claim: Claim) -> bool:
        """Let the room go if it is empty (True); False when a message arrived meanwhile
        (keep going). `Fenced` if it is no longer this worker's."""
        async with self.store.with_connection() as conn, conn.transaction():
            await conn.execute(ASYNC_COMMIT)
            await self._check_fence(conn, claim)
            cursor = await conn.execute(
                "UPDATE cluster_rooms SET holder = NULL, lease_until = NULL"
                " WHERE agent_id = %s AND room_id = %s AND pending = 0",
                (claim.agent_id, claim.room_id),
            )
            return bool(cursor.rowcount == 1)

    async def release_all(self) -> int:
        """Let every room this worker holds go (graceful stop): others take them at once."""
        async with self.store.with_connection() as conn:
            cursor = await conn.execute(
                "UPDATE cluster_rooms SET holder = NULL, lease_until = NULL WHERE holder = %s",
                (self.node_id,),
            )
            return int(cursor.rowcount)

    async def renew(self, claims: Sequence[Claim]) -> set[tuple[UUID, UUID]]:
        """Extend the leases of `claims`; returns the rooms still held under their tokens."""
        if not claims:
            return set()
        async with self.store.with_connection() as conn:
            await conn.execute(ASYNC_COMMIT)
            cursor = await conn.execute(
                "UPDATE cluster_rooms r SET lease_until = clock_timestamp()"
                " + make_interval(secs => %s)"
                " FROM unnest(%s::uuid[], %s::uuid[], %s::bigint[]) AS c(agent_id, room_id, fence)"
                " WHERE r.agent_id = c.agent_id AND r.room_id = c.room_id"
                " AND r.fence = c.fence AND r.holder = %s RETURNING r.agent_id, r.room_id",
                (
                    self.lease,
                    [c.agent_id for c in claims],
                    [c.room_id for c in claims],
                    [c.fence for c in claims],
                    self.node_id,
                ),
            )
            rows = await cursor.fetchall()
        return {(UUID(str(r[0])), UUID(str(r[1]))) for r in rows}

    # ------------------------------------------------------------------ retention

    async def purge(self, retention: float, batch: int, batches: int) -> int | None:
        """Delete the messages answered (``done``) more than `retention` s ago, `batch` at a
        time (a transaction each, oldest first), until none is left or after `batches`
        batches (the next run goes on: a big backlog is not purged in one go, which would
        keep the table busy); their keys are then free (a message with the same id is taken
        as new). Returns how many, or None when another member is purging: one at a time
        (`PURGE_LOCK`)."""
        purged = 0
        for _ in range(batches):
            async with self.store.with_connection() as conn, conn.transaction():
                cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (PURGE_LOCK,))
                row = await cursor.fetchone()
                if row is None or not row[0]:
                    return purged or None
                cursor = await conn.execute(
                    "DELETE FROM cluster_messages WHERE id IN (SELECT id FROM cluster_messages"
                    " WHERE status = 'done'"
                    " AND done_at < clock_timestamp() - make_interval(secs => %s)"
                    " ORDER BY done_at LIMIT %s)",
                    (retention, batch),
                )
                purged += int(cursor.rowcount)
            if cursor.rowcount < batch:
                break
        return purged

    # ------------------------------------------------------------------ members

    async def heartbeat(self, role: str, *, stopped: bool = False) -> None:
        """This member is alive (or stopped), with its counters."""
        counts = [self.counts[name] for name in COUNTERS]
        async with self.store.with_connection() as conn:
            await conn.execute(ASYNC_COMMIT)
            await conn.execute(
                "INSERT INTO cluster_workers (id, role, host, pid, processed, failed, fenced,"
                " takeovers) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET seen_at = now(),"
                " stopped_at = CASE WHEN %s THEN now() END, processed = excluded.processed,"
                " failed = excluded.failed, fenced = excluded.fenced,"
                " takeovers = excluded.takeovers",
                (self.node_id, role, socket.gethostname(), os.getpid(), *counts, stopped),
            )

    async def status(self, alive_within: float) -> dict[str, Any]:
        """What ``GET /cluster`` shows: members, rooms held, backlog, redeliveries, parked."""
        async with self.store.with_connection() as conn:
            return await cluster_status(conn, self.node_id, alive_within)


def _duplicate(
    message_id: UUID, found: tuple[str | None] | None, limit: int, retry_after: int
) -> Enqueued:
    """The message taken already, with its stored fingerprint; `Backlogged` if not taken
    (the room was full)."""
    if found is None:
        raise Backlogged(limit, limit, retry_after)
    return Enqueued(message_id, duplicate=True, fingerprint=found[0])


def _check_ended(cursor: psycopg.AsyncCursor[Any], message_id: UUID) -> None:
    if cursor.rowcount != 1:  # cannot happen under the fence; never count a room twice
        raise Fenced(f"message {message_id} already ended")


async def _queued(cursor: psycopg.AsyncCursor[Any]) -> QueuedMessage | None:
    return queued_row(await cursor.fetchone())


async def _released(cursor: psycopg.AsyncCursor[Any]) -> bool:
    row = await cursor.fetchone()
    return bool(row is not None and row[0])


async def _sent(cursor: psycopg.AsyncCursor[Any] | None) -> list[tuple[int, str, bytes]]:
    if cursor is None:
        return []
    return [(int(r[0]), r[1], bytes(r[2])) for r in await cursor.fetchall()]
