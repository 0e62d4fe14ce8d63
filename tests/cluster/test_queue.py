"""The room queue on a real PostgreSQL, in one process: fencing tokens, leases, dedup,
backpressure and the one-transaction commit, step by step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest

from builtin_plugins.postgres import PostgresAdapter
from builtin_plugins.postgres.writes import DimensionChanged
from contracts.memory import Content, Memory, MemoryUpdate, utc_now
from contracts.storage import BatchError
from host.cluster.queue import PURGE_LOCK, RoomQueue
from host.cluster.records import Abandoned, Backlogged, Fenced
from host.cluster.unit import Unit, UnitAdapter, unit_ids, working_on
from host.pytest_plugin import fresh_schema, schema_uri

pytestmark = pytest.mark.postgres

AGENT = uuid4()


@pytest.fixture
async def store(pg_server_uri: str) -> AsyncIterator[PostgresAdapter]:
    async with fresh_schema(pg_server_uri, "queue") as schema:
        adapter = await PostgresAdapter.open(schema_uri(pg_server_uri, schema), max_size=4)
        await RoomQueue(adapter, "setup", lease=1).migrate()
        try:
            yield adapter
        finally:
            await adapter.close()


def message(room: UUID, text: str) -> Memory:
    return Memory(
        id=uuid4(),
        agent_id=AGENT,
        entity_id=uuid4(),
        room_id=room,
        content=Content(text=text),
        created_at=utc_now(),
    )


def held(message_id: UUID, *memories: Memory) -> Unit:
    return Unit(message_id, memories=list(memories))


async def put(queue: RoomQueue, memory: Memory, limit: int = 100) -> bool:
    taken = await queue.enqueue(
        memory, idem_key=None, origin=None, stream=False, limit=limit, retry_after=1
    )
    return taken.duplicate


async def test_a_worker_whose_room_was_taken_over_cannot_commit(store: PostgresAdapter) -> None:
    a = RoomQueue(store, "a", lease=0.3)
    b = RoomQueue(store, "b", lease=5)
    room = uuid4()
    incoming = message(room, "hello")
    await put(a, incoming)
    claim_a = await a.claim([AGENT])
    assert claim_a is not None and not claim_a.takeover
    assert await b.claim([AGENT]) is None  # held
    taken_a = claim_a.first
    assert taken_a is not None and taken_a.tries == 1
    await asyncio.sleep(0.4)  # a is paused past its lease
    claim_b = await b.claim([AGENT])
    assert claim_b is not None and claim_b.takeover and claim_b.fence == claim_a.fence + 1
    with pytest.raises(Fenced):
        await a.commit(claim_a, taken_a, held(taken_a.id, incoming), '{"late": true}')
    assert await store.get_memory(incoming.id) is None  # nothing of a's commit
    assert await a.renew([claim_a]) == set()
    with pytest.raises(Fenced):
        await a.next_message(claim_a)
    taken_b = claim_b.first
    assert taken_b is not None and taken_b.id == incoming.id and taken_b.tries == 2
    committed = await b.commit(claim_b, taken_b, held(taken_b.id, incoming), '{"ok": true}')
    assert (committed.following, committed.released) == (None, True)
    assert await store.get_memory(incoming.id) is not None
    [outcome] = await b.outcomes([incoming.id])
    assert (outcome.status, outcome.reply) == ("done", '{"ok": true}')
    assert await a.claim([AGENT]) is None  # empty, released: nothing to claim


async def test_messages_come_in_arrival_order_and_a_late_one_keeps_the_room(
    store: PostgresAdapter,
) -> None:
    queue = RoomQueue(store, "w", lease=5)
    room = uuid4()
    first, second, third = (message(room, t) for t in ("1", "2", "3"))
    for memory in (first, second):
        await put(queue, memory)
    claim = await queue.claim([AGENT])
    assert claim is not None
    got = []
    taken = claim.first
    while taken is not None:
        got.append(taken.message.content.text)
        if taken.id == second.id:
            await put(queue, third)  # arrives while the worker holds the room
        committed = await queue.commit(claim, taken, Unit(taken.id), "{}")
        taken, released = committed.following, committed.released
    assert got == ["1", "2", "3"] and released
    assert await queue.claim([AGENT]) is None
    # a message arriving after the room was let go is claimed again (by anyone)
    await put(queue, message(room, "4"))
    again = await queue.claim([AGENT])
    assert again is not None and again.fence == claim.fence + 1
    fourth = again.first
    assert fourth is not None and fourth.message.content.text == "4"
    committed = await queue.commit(again, fourth, Unit(fourth.id), "{}", take_next=False)
    assert (committed.following, committed.released) == (None, False)
    assert await queue.release(again)


async def test_the_commit_that_lets_a_room_go_claims_the_next_room(
    store: PostgresAdapter,
) -> None:
    """One transaction per message with many rooms: the commit emptying a room claims
    another (its first message taken); a room with a backlog keeps its worker; a fenced
    commit claims nothing."""
    queue = RoomQueue(store, "w", lease=5)
    a, b, c = uuid4(), uuid4(), uuid4()
    for room, text in ((a, "a1"), (a, "a2"), (b, "b1"), (c, "c1")):
        await put(queue, message(room, text))
    claim = await queue.claim([AGENT])
    assert claim is not None and claim.room_id == a and claim.first is not None
    committed = await queue.commit(
        claim, claim.first, Unit(claim.first.id), "{}", claim_from=[AGENT]
    )
    assert committed.following is not None and not committed.released
    assert committed.claimed is None  # a2 waits: the room keeps its worker, no other room
    last = committed.following
    committed = await queue.commit(claim, last, Unit(last.id), "{}", claim_from=[AGENT])
    assert committed.following is None and committed.released
    room_b = committed.claimed
    assert room_b is not None and room_b.room_id == b and not room_b.takeover
    assert room_b.first is not None and room_b.first.message.content.text == "b1"
    assert room_b.first.tries == 1
    assert await RoomQueue(store, "other", lease=5).claim([AGENT]) is not None  # c, free
    rows = await _rooms(store)
    assert rows[a] == (None, 0) and rows[b] == ("w", 1) and rows[c] == ("other", 1)
    # another agent's rooms are not claimed
    committed = await queue.commit(
        room_b, room_b.first, Unit(room_b.first.id), "{}", claim_from=[uuid4()]
    )
    assert committed.released and committed.claimed is None
    # a fenced commit claims nothing: its transaction is rolled back
    await put(queue, message(a, "a3"))
    await put(queue, message(b, "b2"))
    late = RoomQueue(store, "late", lease=0.2)
    stale = await late.claim([AGENT])
    assert stale is not None and stale.room_id == a and stale.first is not None
    await asyncio.sleep(0.3)
    taker = await queue.claim([AGENT])
    assert taker is not None and taker.room_id == a and taker.takeover
    with pytest.raises(Fenced):
        await late.commit(stale, stale.first, Unit(stale.first.id), "{}", claim_from=[AGENT])
    assert (await _rooms(store))[b] == (None, 1)  # still waiting for a worker


async def test_a_commit_read_back_by_its_token_gives_what_it_did(store: PostgresAdapter) -> None:
    """`landed`: a commit whose answer was lost is recognised by its token (the next message
    it took, the room it claimed, as its own answer would have said); another token, or a
    commit that did not land, reads as not landed and `commit_again` commits it."""
    queue = RoomQueue(store, "w", lease=5)
    a, b = uuid4(), uuid4()
    for room, text in ((a, "a1"), (a, "a2"), (b, "b1")):
        await put(queue, message(room, text))
    claim = await queue.claim([AGENT])
    assert claim is not None and claim.room_id == a and claim.first is not None
    first, token = claim.first, uuid4()
    events = Unit(first.id, outbox=[("ev.a1", b'{"n": 1}'), ("ev.a1", b'{"n": 2}')])
    done = await queue.commit(claim, first, events, "{}", claim_from=[AGENT], token=token)
    assert await queue.landed(claim, first.id, uuid4()) is None  # not that commit's token
    kept = await queue.landed(claim, first.id, token)
    assert kept is not None and kept.landed and not kept.released and kept.claimed is None
    assert kept.outbox == done.outbox and [r[2] for r in kept.outbox] == [b'{"n": 1}', b'{"n": 2}']
    assert kept.following is not None and kept.following.message.content.text == "a2"
    assert kept.following.tries == 1  # counted by the commit, not by the read
    last, token = kept.following, uuid4()
    await queue.commit(claim, last, Unit(last.id), "{}", claim_from=[AGENT], token=token)
    moved = await queue.landed(claim, last.id, token)
    assert moved is not None and moved.released and moved.following is None
    assert moved.claimed is not None and moved.claimed.room_id == b
    assert moved.claimed.first is not None and moved.claimed.first.message.content.text == "b1"
    assert moved.claimed.first.tries == 1
    assert (await _rooms(store))[b] == ("w", 1)
    # not landed: committed afresh under the same token
    room_b, token = moved.claimed, uuid4()
    assert room_b.first is not None
    again = await queue.commit_again(room_b, room_b.first, Unit(room_b.first.id), "{}", token=token)
    assert not again.landed and again.released
    assert (await queue.landed(room_b, room_b.first.id, token)) is not None


async def test_answered_messages_past_the_retention_are_purged_in_batches_by_one_at_a_time(
    store: PostgresAdapter,
) -> None:
    """`purge`: only ``done`` messages that ended more than the retention ago go, a batch per
    transaction, never while another member purges; a purged id is then taken as new."""
    queue = RoomQueue(store, "w", lease=5)
    room = uuid4()
    sent = [message(room, f"m{i}") for i in range(5)]
    for memory in sent:
        await put(queue, memory)
    claim = await queue.claim([AGENT])
    assert claim is not None
    taken = claim.first
    for _ in range(4):  # m0..m3 answered; m4 parked
        assert taken is not None
        taken = (await queue.commit(claim, taken, Unit(taken.id), "{}")).following
    assert taken is not None
    await queue.park(claim, taken, "poisoned")
    late = message(room, "late")
    await put(queue, late)  # waiting: never purged
    async with store.with_connection() as conn:
        # m0..m2 ended an hour ago; the parked m4 and the waiting `late` are as old: only
        # their status keeps them
        await conn.execute(
            "UPDATE cluster_messages SET done_at = done_at - interval '1 hour',"
            " created_at = created_at - interval '1 hour' WHERE id = ANY(%s)",
            ([m.id for m in (*sent[:3], sent[4], late)],),
        )
    async with store.with_connection() as other, other.transaction():
        await other.execute("SELECT pg_advisory_xact_lock(%s)", (PURGE_LOCK,))
        assert await queue.purge(60, 2, 10) is None  # another member purges: not now
    assert await queue.purge(60, 1, 2) == 2  # at most two batches in one run
    assert await queue.purge(60, 2, 10) == 1  # the next run goes on
    assert await queue.purge(60, 2, 10) == 0
    async with store.with_connection() as conn:
        cursor = await conn.execute(
            "SELECT message::json->'content'->>'text', status FROM cluster_messages"
            " ORDER BY room_seq"
        )
        left = await cursor.fetchall()
    assert left == [("m3", "done"), ("m4", "parked"), ("late", "pending")]
    assert not await put(queue, sent[0])  # its id is free: taken as a new message


async def _rooms(store: PostgresAdapter) -> dict[UUID, tuple[str | None, int]]:
    """Each room's holder and the messages left in it."""
    async with store.with_connection() as conn:
        cursor = await conn.execute("SELECT room_id, holder, pending FROM cluster_rooms")
        return {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}


async def test_a_message_id_is_taken_once_even_when_sent_twice_at_once(
    store: PostgresAdapter,
) -> None:
    queue = RoomQueue(store, "api", lease=5)
    memory = message(uuid4(), "once")
    results = await asyncio.gather(*(put(queue, memory) for _ in range(5)))
    assert sorted(results) == [False, True, True, True, True]
    async with store.with_connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*), max(pending) FROM cluster_messages, cluster_rooms"
        )
        assert await cursor.fetchone() == (1, 1)


async def test_a_full_room_refuses_without_counting_the_refused_message(
    store: PostgresAdapter,
) -> None:
    queue = RoomQueue(store, "api", lease=5)
    room = uuid4()
    await put(queue, message(room, "1"), limit=2)
    await put(queue, message(room, "2"), limit=2)
    with pytest.raises(Backlogged) as refused:
        await put(queue, message(room, "3"), limit=2)
    assert refused.value.retry_after == 1 and "2 messages waiting (limit 2)" in str(refused.value)
    await put(queue, message(uuid4(), "other room"), limit=2)
    status = await queue.status(alive_within=6)
    assert status["queue_depth"] == 3 and status["rooms_waiting"] == 2


async def test_a_unit_holds_writes_back_and_its_ids_repeat_on_a_second_try(
    store: PostgresAdapter,
) -> None:
    adapter = UnitAdapter(store)
    message_id = uuid4()
    tries = []
    for _ in range(2):
        with working_on(Unit(message_id)) as unit:
            reply = message(uuid4(), "reply").model_copy(update={"id": unit_ids()})
            await adapter.create_memory(reply)
            assert await adapter.get_memory(reply.id) == reply  # read back from the unit
            assert await store.get_memory(reply.id) is None  # not written yet
            tries.append(list(unit.memories))
    assert [m.id for m in tries[0]] == [m.id for m in tries[1]]
    assert unit_ids() != unit_ids()  # outside a unit: random
    async with store.with_connection() as conn, conn.transaction():
        assert await store.create_missing_on(conn, tries[0]) == [tries[0][0].id]
    async with store.with_connection() as conn, conn.transaction():
        assert await store.create_missing_on(conn, tries[1]) == []  # the second try: skipped
    assert await store.count_memories() == 1


async def test_a_commits_memories_wait_for_one_answer_once_their_dimension_is_known(
    store: PostgresAdapter,
) -> None:
    """create_missing_on records each table's dimension; later writes check the rows against
    it and lock, skip stored ids and insert in one flight; a reset of the embeddings by
    another process since then fails the write (nothing written) and the next write goes
    the slow way, fixing the new dimension."""
    room = uuid4()

    def embedded(text: str, dim: int) -> Memory:
        return message(room, text).model_copy(update={"embedding": [0.5] * dim})

    first, second, third = embedded("1", 4), embedded("2", 4), embedded("3", 4)
    async with store.with_connection() as conn, conn.transaction():
        assert await store.create_missing_on(conn, [first]) == [first.id]  # the slow way
    async with store.with_connection() as conn, conn.pipeline(), conn.transaction():
        assert await store.create_missing_on(conn, [first, second]) == [second.id]
    async with store.with_connection() as conn, conn.transaction():
        with pytest.raises(BatchError, match="dimension"):  # checked against the record
            await store.create_missing_on(conn, [embedded("wrong", 3)])
    # another process resets the table's embeddings
    other = await PostgresAdapter.open(str(store.pool.conninfo), min_size=1, max_size=1)
    try:
        assert await other.reset_embeddings("messages") == 2
    finally:
        await other.close()
    with pytest.raises(DimensionChanged):
        async with store.with_connection() as conn, conn.pipeline(), conn.transaction():
            await store.create_missing_on(conn, [third])
    assert await store.get_memory(third.id) is None
    wider = embedded("wider", 6)
    async with store.with_connection() as conn, conn.pipeline(), conn.transaction():
        assert await store.create_missing_on(
            conn, [third.model_copy(update={"embedding": None}), wider]
        ) == [third.id, wider.id]
    assert await store.embedding_dimension("messages") == 6


async def test_the_unit_adapter_forwards_replace_memories(store: PostgresAdapter) -> None:
    adapter = UnitAdapter(store)
    old = message(uuid4(), "old")
    await store.create_memory(old)
    new = message(old.room_id, "new")
    assert await adapter.replace_memories([old.id], [new]) == [new.id]
    assert await store.get_memory(old.id) is None
    assert await store.get_memory(new.id) == new


async def test_a_units_updates_and_deletes_are_held_and_committed_with_the_message(
    store: PostgresAdapter,
) -> None:
    adapter = UnitAdapter(store)
    room = uuid4()
    keep, drop = message(room, "keep"), message(room, "drop")
    await store.create_memories_batch([keep, drop])
    queue = RoomQueue(store, "w", lease=0.3)
    incoming = message(room, "edit")
    await put(queue, incoming)
    claim = await queue.claim([AGENT])
    assert claim is not None
    taken = claim.first
    assert taken is not None
    with working_on(Unit(taken.id)) as unit:
        created = message(room, "created").model_copy(update={"id": unit_ids()})
        await adapter.create_memory(created)
        edit = MemoryUpdate(id=keep.id, content=Content(text="kept"))
        assert await adapter.update_memories_batch([edit, MemoryUpdate(id=uuid4())]) == [
            True,
            False,
        ]
        assert await adapter.update_memory(
            MemoryUpdate(id=created.id, content=Content(text="created, edited"))
        )
        assert await adapter.delete_memory(drop.id)
        assert not await adapter.delete_memory(drop.id)  # deleted already (in the unit)
        assert not await adapter.update_memory(edit.model_copy(update={"id": drop.id}))
        # the unit sees its own writes; the store does not, yet
        assert (await adapter.get_memory(keep.id)).content.text == "kept"  # type: ignore[union-attr]
        assert await adapter.get_memory(drop.id) is None
        assert (await adapter.get_memory(created.id)).content.text == "created, edited"  # type: ignore[union-attr]
        assert (await store.get_memory(keep.id)).content.text == "keep"  # type: ignore[union-attr]
        assert await store.get_memory(drop.id) is not None
        unit.outbox.append(("agenthost.cluster.event.test", b"{}"))
    # a commit refused by the fence writes none of it
    await asyncio.sleep(0.4)
    other = RoomQueue(store, "other", lease=5)
    claim2 = await other.claim([AGENT])
    assert claim2 is not None
    with pytest.raises(Fenced):
        await queue.commit(claim, taken, unit, "{}")
    assert (await store.get_memory(keep.id)).content.text == "keep"  # type: ignore[union-attr]
    assert await store.get_memory(drop.id) is not None
    assert await store.get_memory(created.id) is None
    async with store.with_connection() as conn:
        assert await (await conn.execute("SELECT count(*) FROM cluster_outbox")).fetchone() == (0,)
    # the holder's commit writes all of it, and the outbox row
    taken2 = claim2.first
    assert taken2 is not None and taken2.id == taken.id
    committed = await other.commit(claim2, taken2, unit, "{}")
    assert [row[1:] for row in committed.outbox] == [("agenthost.cluster.event.test", b"{}")]
    assert (await store.get_memory(keep.id)).content.text == "kept"  # type: ignore[union-attr]
    assert await store.get_memory(drop.id) is None
    assert (await store.get_memory(created.id)).content.text == "created, edited"  # type: ignore[union-attr]
    # a message committed outside of a unit still writes at once
    assert await adapter.delete_memory(created.id)
    assert await store.get_memory(created.id) is None


class PurgedMeanwhile(RoomQueue):
    """A queue whose first look at a duplicate comes after a purge deleted it (what a purge
    running between ingress's failed insert and its read does)."""

    purges = 1

    async def _stored(self, message_id: UUID) -> tuple[str | None] | None:
        if self.purges:
            self.purges -= 1
            async with self.store.with_connection() as conn:
                await conn.execute("DELETE FROM cluster_messages WHERE id = %s", (message_id,))
        return await super()._stored(message_id)


async def test_a_duplicate_purged_before_it_is_read_is_taken_as_new_not_refused(
    store: PostgresAdapter,
) -> None:
    """A purge racing ingress: the insert finds the id taken, the purge deletes it before the
    duplicate is read; the message is then new (not a 429 for a room that is not full)."""
    queue = PurgedMeanwhile(store, "api", lease=5)
    memory = message(uuid4(), "purged meanwhile")
    assert not await put(queue, memory)
    assert not await put(queue, memory)  # taken again, as new
    async with store.with_connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM cluster_messages WHERE id = %s", (memory.id,)
        )
        assert await cursor.fetchone() == (1,)


async def test_reading_back_a_commit_whose_room_stays_locked_gives_up_after_a_lease(
    store: PostgresAdapter,
) -> None:
    """`landed` waits for the room's row (a lost commit may still hold it) one lease at most:
    on a half-open connection it would wait forever; it leaves the lease to end instead."""
    queue = RoomQueue(store, "w", lease=0.5)
    await put(queue, message(uuid4(), "held"))
    claim = await queue.claim([AGENT])
    assert claim is not None and claim.first is not None
    async with store.with_connection() as other, other.transaction():
        await other.execute(  # the lost commit, still running on the server
            "SELECT 1 FROM cluster_rooms WHERE room_id = %s FOR UPDATE", (claim.room_id,)
        )
        started = time.monotonic()
        with pytest.raises(Abandoned, match="its lease is left to end"):
            await asyncio.wait_for(queue.landed(claim, claim.first.id, uuid4()), 10)
        assert time.monotonic() - started < 5
