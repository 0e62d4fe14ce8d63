"""The provider cache inside a running host: state composition reuses results, the runtime's own
memory:created events invalidate them (room by room, dependents too), and a plugin's removal
drops its entries. Real SQLite store, real eliza agent, real event bus."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import uuid4

import pytest

from contracts.agent import CachePolicy, Provider, ProviderResult, State
from contracts.cache import CacheContext, CacheStats
from contracts.events import MEMORY_CREATED, MemoryPayload
from contracts.memory import Memory
from host.app import Host
from host.runtime import AgentRuntime
from host.testing import OfflineHosts


@pytest.fixture
async def host(offline_host: OfflineHosts) -> Host:
    return await offline_host()


class Notes:
    """A plugin's providers: a room's memory count (invalidated by memory:created), a summary
    depending on it, and a slow-changing value only a TTL expires."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self.runtime = runtime
        self.calls: Counter[str] = Counter()

    async def count(self, message: Memory, state: State) -> ProviderResult:
        self.calls["count"] += 1
        rows = await self.runtime.recent_memories(message.room_id, 1000)
        return ProviderResult(values={"memories": len(rows)})

    async def summary(self, message: Memory, state: State) -> ProviderResult:
        self.calls["summary"] += 1
        return ProviderResult(text=f"summary #{self.calls['summary']}")

    async def motto(self, message: Memory, state: State) -> ProviderResult:
        self.calls["motto"] += 1
        return ProviderResult(values={"motto": "be kind"})

    def providers(self) -> list[Provider]:
        return [
            Provider(
                "notes.count",
                self.count,
                cache=CachePolicy(ttl=60, invalidate_on=(MEMORY_CREATED,)),
            ),
            Provider(
                "notes.summary",
                self.summary,
                cache=CachePolicy(ttl=60, dependencies=("notes.count",)),
            ),
            Provider("notes.motto", self.motto, cache=CachePolicy(ttl=60)),
        ]


async def test_compose_reuses_results_until_the_runtime_stores_a_memory(host: Host) -> None:
    assert host.agents is not None
    eliza = host.agents.get("eliza")
    notes = Notes(eliza)
    host.components.add("notes", providers=notes.providers())
    room_a, room_b, user = uuid4(), uuid4(), uuid4()

    first = eliza.new_message("hello", room_id=room_a, entity_id=user)
    reply = await eliza.process_message(first)  # stores the message (and the reply)
    assert reply.responded
    assert notes.calls == {"count": 1, "summary": 1, "motto": 1}
    stored = len(await eliza.recent_memories(room_a, 1000))
    assert stored == 2  # the message and eliza's reply

    # The reply was stored after that compose: its memory:created invalidated count and its
    # dependent summary, which are recomputed (and see the reply); motto is a hit.
    state = await eliza.compose_state(first)
    assert state.values["memories"] == stored
    assert notes.calls == {"count": 2, "summary": 2, "motto": 1}
    state = await eliza.compose_state(first)
    assert notes.calls == {"count": 2, "summary": 2, "motto": 1}  # all hits now

    # A memory stored in room B invalidates room B only.
    await eliza.save_memory(eliza.new_message("elsewhere", room_id=room_b, entity_id=user))
    await eliza.compose_state(first)
    assert notes.calls == {"count": 2, "summary": 2, "motto": 1}

    # A memory stored in room A: the next compose never serves the old count.
    await eliza.save_memory(eliza.new_message("note", room_id=room_a, entity_id=user))
    state = await eliza.compose_state(first)
    assert state.values["memories"] == stored + 1
    assert notes.calls == {"count": 3, "summary": 3, "motto": 1}
    stats = host.cache.stats()
    assert stats.hits >= 6 and stats.invalidations >= 4 and stats.entries == 3


async def test_removing_a_plugin_drops_its_entries_and_policies(host: Host) -> None:
    assert host.agents is not None
    eliza = host.agents.get("eliza")
    notes = Notes(eliza)
    host.components.add("notes", providers=notes.providers())
    message = eliza.new_message("hello", room_id=uuid4(), entity_id=uuid4())
    await eliza.compose_state(message)
    assert host.cache.stats().entries == 3

    host.components.unregister_plugin("notes")  # what the loader does on unload and reload
    assert host.cache.stats().entries == 0
    assert host.cache.policy("notes.count") is None

    # Registered again (a reload): computed afresh, not served from before.
    host.components.add("notes", providers=notes.providers())
    await eliza.compose_state(message)
    assert notes.calls == {"count": 2, "summary": 2, "motto": 2}


async def test_handlers_of_the_invalidating_event_already_see_fresh_state(host: Host) -> None:
    """The cache invalidates before any other handler of memory:created runs, whatever its
    priority, awaited or detached: a fact extractor composing state on memory:created never
    gets the entry that event made stale."""
    assert host.agents is not None
    eliza = host.agents.get("eliza")
    notes = Notes(eliza)
    host.components.add("notes", providers=notes.providers())
    room = uuid4()
    first = eliza.new_message("hello", room_id=room, entity_id=uuid4())
    await eliza.compose_state(first)  # cached: 0 memories in the room
    seen: list[tuple[str, int]] = []

    async def extractor(payload: MemoryPayload) -> None:
        state = await eliza.compose_state(first)
        seen.append(("awaited", state.values["memories"]))

    async def background(payload: MemoryPayload) -> None:
        state = await eliza.compose_state(first)
        seen.append(("detached", state.values["memories"]))

    host.events.on(MEMORY_CREATED, extractor, owner="facts", priority=10**6)
    host.events.on(MEMORY_CREATED, background, owner="facts", detached=True)
    await eliza.save_memory(first)
    assert await host.events.drain(within=5)
    assert sorted(seen) == [("awaited", 1), ("detached", 1)]


class Recording:
    """A provider cache of another kind (a plugin's, bound to the CACHE token): it sees
    every provider's lookup, and computes each."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    async def get_or_compute(self, provider: str, context: CacheContext, compute: Any) -> Any:
        self.asked.append((provider, context.message_id))
        return await compute()

    def invalidate(self, provider: str, context: CacheContext | None = None) -> int:
        return 0

    def stats(self) -> CacheStats:
        raise NotImplementedError


async def test_another_kind_of_cache_is_asked_about_every_provider(host: Host) -> None:
    """The host's own cache is skipped for providers without a policy (the builtin history
    among them); a cache of another kind decides for itself, so it is asked about each."""
    assert host.agents is not None
    eliza = host.agents.get("eliza")
    notes = Notes(eliza)
    host.components.add("notes", providers=notes.providers())
    recording = Recording()
    eliza.states.cache = recording
    message = eliza.new_message("hello", room_id=uuid4(), entity_id=uuid4())
    await eliza.compose_state(message)
    assert sorted(recording.asked) == sorted(
        (name, str(message.id))
        for name in ("recent_messages", "notes.count", "notes.summary", "notes.motto")
    )
    eliza.states.cache = None  # no cache: every provider runs, nothing is asked
    state = await eliza.compose_state(message)
    assert len(recording.asked) == 4 and notes.calls["motto"] == 2
    assert "recent_messages" in state.providers
