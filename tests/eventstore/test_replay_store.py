"""`ReplayStore`'s reads and index builds. The memories of `ReplayStore.hidden` (stored by
other conversations while the replayed message was answered: it could not have seen them) are
left out of every read of the scratch store, counts and room summaries too: a provider counting
the conversation's memories or listing its rooms must see what the recorded message saw. And an
index build never reaches the configured store (the replay writes nothing there)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from contracts.memory import Content, Memory, MemoryQuery
from contracts.storage import DatabaseAdapter, IndexType, RoomSummary
from host.eventstore.replay_store import ReplayStore
from host.forwarding import ForwardingAdapter
from host.pytest_plugin import backend_factory

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _memory(room: object, minute: int) -> Memory:
    return Memory(
        agent_id=AGENT,
        entity_id=uuid4(),
        room_id=room,
        content=Content(text=f"at {minute}"),
        created_at=T0 + timedelta(minutes=minute),
    )


AGENT = uuid4()


async def test_counts_and_room_summaries_leave_out_hidden_memories(
    request: pytest.FixtureRequest,
) -> None:
    first, second, third = uuid4(), uuid4(), uuid4()
    async with (
        backend_factory("sqlite", request)() as scratch,
        backend_factory("inmemory", request)() as live,
    ):
        store = ReplayStore(scratch, live, ())
        kept = [_memory(first, 0), _memory(first, 1), _memory(second, 2)]
        late = [_memory(first, 5), _memory(second, 6), _memory(third, 7)]
        await store.create_memories_batch([*kept, *late])
        everything = [
            RoomSummary(third, 1, late[2].created_at),
            RoomSummary(second, 2, late[1].created_at),
            RoomSummary(first, 3, late[0].created_at),
        ]
        assert await store.room_summaries() == everything
        assert await store.count_memories() == 6

        store.hidden = frozenset(m.id for m in late)
        assert await store.count_memories() == 3
        assert await store.count_memories(MemoryQuery(room_id=first)) == 2
        assert await store.count_memories(MemoryQuery(room_id=third)) == 0
        assert await store.room_summaries() == [
            RoomSummary(second, 1, kept[2].created_at),
            RoomSummary(first, 2, kept[1].created_at),
        ]
        # a query's own filters still apply, with the hidden memories left out
        narrowed = MemoryQuery(end=kept[1].created_at)
        assert await store.count_memories(narrowed) == 1
        assert await store.room_summaries(narrowed) == [RoomSummary(first, 1, kept[0].created_at)]

        store.hidden = frozenset()
        assert await store.room_summaries() == everything


class _Watched(ForwardingAdapter):
    """A real store, noting the index builds asked of it."""

    def __init__(self, inner: DatabaseAdapter) -> None:
        super().__init__(inner)
        self.builds: list[str | None] = []

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        self.builds.append(table_name)
        await super().build_index(index_type, table_name)


async def test_index_builds_never_reach_the_configured_store(
    request: pytest.FixtureRequest,
) -> None:
    async with (
        backend_factory("sqlite", request)() as scratch_store,
        backend_factory("inmemory", request)() as live_store,
    ):
        scratch, live = _Watched(scratch_store), _Watched(live_store)
        store = ReplayStore(scratch, live, ("facts",))
        await store.build_index("hnsw", "knowledge")  # read from the configured store
        await store.build_index("hnsw", "facts")
        await store.build_index("hnsw")
        assert live.builds == []
        assert scratch.builds == ["facts", None]
