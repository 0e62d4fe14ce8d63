"""Recall and knowledge answer from the memories as they stand: the SQLite store's shortcuts (its
kept label sets, one search of several filters at once) never serve a row that another
connection to the same file updated, deleted or replaced, nor miss one it wrote."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.eliza.embedding import embed
from builtin_plugins.knowledge import KnowledgeStore
from builtin_plugins.recall import RecallPlugin, RecallSettings
from builtin_plugins.sqlite.adapter import SqliteAdapter
from contracts.agent import State
from contracts.memory import Content, Memory, MemoryUpdate
from host.metrics import InMemoryMetrics
from host.metrics.storage import InstrumentedAdapter
from host.models import ModelRegistry

BICYCLE = "My bicycle is locked in the garden shed behind the house."
TAXES = "The quarterly tax forms are due at the end of April."


def _models() -> ModelRegistry:
    registry = ModelRegistry()
    for handler in ElizaPlugin().models():
        registry.register(handler, owner="eliza")
    return registry


def _memory(agent: UUID, room: UUID, entity: UUID, text: str, when: datetime) -> Memory:
    return Memory(
        agent_id=agent,
        entity_id=entity,
        room_id=room,
        content=Content(text=text),
        embedding=embed(text),
        created_at=when,
    )


async def _shown(recall: RecallPlugin, message: Memory) -> str:
    """What recall shows for `message`."""
    return (await recall.relevant(message, State())).text or ""


async def test_recall_follows_another_connection_s_writes_updates_and_deletes(
    tmp_path: Path,
) -> None:
    """Recall's room and speaker scopes are one search over kept label sets. Another
    connection to the file writes the speaker's memory in another room, changes its text and
    vector, gives it back, and deletes it; this store deletes one of the room's: each next
    message's relevant memories are those the file holds then."""
    path = tmp_path / "recall.sqlite3"
    mine, other = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    db = InstrumentedAdapter(mine, InMemoryMetrics())  # the host's wrapper, as in the pipeline
    try:
        agent, user, room, elsewhere = uuid4(), uuid4(), uuid4(), uuid4()
        recall = RecallPlugin(db, _models(), RecallSettings(threshold=0.2))
        old = datetime(2020, 1, 1, tzinfo=UTC)
        for i in range(14):  # more than the recent conversation (11) shows
            text = f"Tell me story number {i}"
            await db.create_memory(_memory(agent, room, user, text, datetime.now(UTC)))

        async def ask(text: str) -> Memory:
            """The message, saved first as the pipeline does (this store's write: the other
            connection's writes below come after it, between the save and the search)."""
            message = _memory(agent, room, user, text, datetime.now(UTC))
            await db.create_memory(message)
            return message

        asked = await ask("where is my bicycle locked?")
        assert BICYCLE not in await _shown(recall, asked)
        asked = await ask("where is my bicycle locked now?")
        fact = _memory(agent, elsewhere, user, BICYCLE, old)  # the speaker, another room
        await other.create_memory(fact)
        assert BICYCLE in await _shown(recall, asked)

        asked = await ask("where is my bicycle locked today?")
        await other.update_memory(
            MemoryUpdate(id=fact.id, content=Content(text=TAXES), embedding=embed(TAXES))
        )
        shown = await _shown(recall, asked)
        assert BICYCLE not in shown and TAXES not in shown
        asked = await ask("when are the quarterly tax forms due?")
        assert TAXES in await _shown(recall, asked)

        asked = await ask("is my bicycle locked in the shed?")
        await other.update_memory(
            MemoryUpdate(id=fact.id, content=Content(text=BICYCLE), embedding=embed(BICYCLE))
        )
        assert BICYCLE in await _shown(recall, asked)
        asked = await ask("is my bicycle locked up?")
        await other.delete_memory(fact.id)
        assert BICYCLE not in await _shown(recall, asked)

        # the room's own memory, written and then deleted by this store
        mine_fact = _memory(agent, room, uuid4(), BICYCLE, old)
        await db.create_memory(mine_fact)
        assert BICYCLE in await _shown(recall, await ask("my bicycle, where is it locked?"))
        assert await db.delete_memory(mine_fact.id)
        assert BICYCLE not in await _shown(recall, await ask("my bicycle: is it locked?"))
    finally:
        await mine.close()
        await other.close()


async def test_knowledge_follows_documents_replaced_and_removed_by_another_connection(
    tmp_path: Path,
) -> None:
    """The knowledge provider's search of the shared and the agent's own documents is one
    search over kept label sets; another connection replacing a document (new chunks, the old
    ones deleted in the same transaction) or removing it is seen by the next search, and
    another agent's documents never are."""
    path = tmp_path / "knowledge.sqlite3"
    mine, other = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    models = _models()
    try:
        agent, stranger = uuid4(), uuid4()
        here = KnowledgeStore(InstrumentedAdapter(mine, InMemoryMetrics()), models)
        there = KnowledgeStore(other, models)
        await here.add_text("The gate code is 1234 for the garden gate.", "gate.md", agent)
        await here.add_text("The wifi password is on the fridge door.", "wifi.md", None)
        await there.add_text("The gate code of the stranger is 5555.", "gate.md", stranger)

        async def found(question: str) -> list[str]:
            return [c.text for c in await here.search_vector(embed(question), agent, 3, 0.1)]

        texts = await found("what is the gate code for the garden gate?")
        assert texts[0] == "The gate code is 1234 for the garden gate."
        assert all("stranger" not in t for t in texts)
        assert "The wifi password is on the fridge door." in await found(
            "where is the wifi password?"
        )

        await there.add_text("The gate code is 9876 since Monday.", "gate.md", agent)
        texts = await found("what is the gate code for the garden gate?")
        assert "The gate code is 9876 since Monday." in texts
        assert all("1234" not in t and "stranger" not in t for t in texts)

        assert await there.remove("gate.md", agent)
        texts = await found("what is the gate code for the garden gate?")
        assert all("9876" not in t and "1234" not in t and "stranger" not in t for t in texts)
        assert await there.remove("wifi.md", None)
        assert await found("where is the wifi password on the fridge?") == []
    finally:
        await mine.close()
        await other.close()


async def test_recall_leaves_out_the_conversation_as_another_connection_leaves_it(
    tmp_path: Path,
) -> None:
    """Recall leaves out the room's latest messages (what the recent conversation shows) as
    the file holds them at its search: another connection's newer message in the room moves
    an older relevant one out of the conversation (now recalled), and its deletes bring it
    back in (no longer recalled); on the writes' connection and on the read-only one."""
    path = tmp_path / "recall.sqlite3"
    mine, other = await SqliteAdapter.open(path), await SqliteAdapter.open(path)
    db = InstrumentedAdapter(mine, InMemoryMetrics())
    try:
        agent, user, room = uuid4(), uuid4(), uuid4()
        recall = RecallPlugin(db, _models(), RecallSettings(threshold=0.2))  # history: 10
        await db.create_memory(_memory(agent, room, user, BICYCLE, datetime.now(UTC)))
        fillers = [_memory(agent, room, user, f"Story {i}", datetime.now(UTC)) for i in range(8)]
        for filler in fillers:
            await db.create_memory(filler)
        first = _memory(agent, room, user, "where is my bicycle locked?", datetime.now(UTC))
        await db.create_memory(first)
        for inline in (True, False):  # the writes' connection, then the read-only one
            mine._inline = inline
            assert BICYCLE not in await _shown(recall, first)  # 10 messages: all shown
        mine._inline = True
        asked = _memory(agent, room, user, "where is my bicycle locked now?", datetime.now(UTC))
        await db.create_memory(asked)  # 11: the bicycle is the oldest the conversation shows
        assert BICYCLE not in await _shown(recall, asked)
        newer = _memory(agent, room, uuid4(), "Hello there", datetime.now(UTC))
        await other.create_memory(newer)
        for inline in (True, False):
            mine._inline = inline
            assert BICYCLE in await _shown(recall, asked)  # out of the latest 11 now
        mine._inline = True
        assert await other.delete_memories_batch([newer.id, fillers[0].id]) == 2
        for inline in (True, False):
            mine._inline = inline
            assert BICYCLE not in await _shown(recall, asked)
    finally:
        mine._inline = True
        await mine.close()
        await other.close()
