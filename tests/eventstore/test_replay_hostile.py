"""A replay sees the store as the recorded conversation saw it at each message, also when the
store changed beside the conversation (real host, SQLite files, audit): a document added to the
knowledge base midway is not seen before it was added; a memory deleted midway (over HTTP, from
the console: ``delete_memory``), the user's or the agent's, is gone from then on."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from builtin_plugins.audit import AuditPlugin
from contracts.eventstore import EVENT_STORE
from contracts.knowledge import KNOWLEDGE
from contracts.memory import MemoryQuery
from host.app import Host
from host.eventstore.replay import host_runtime_factory, replay_conversation
from host.http_manage import delete_memory
from host.pytest_plugin import fresh_schema, schema_uri
from host.testing import OfflineHosts

from .replay_talk import AGENTS, PLUGINS, SETTINGS, TEXTS


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def host(
    request: pytest.FixtureRequest, tmp_path: Path, offline_host: OfflineHosts
) -> AsyncIterator[Host]:
    """A host on the SQLite store, or on PostgreSQL (a fresh schema; the audit trail there too):
    the replay's scratch store is then in-memory, the knowledge read from PostgreSQL."""
    if request.param == "sqlite":
        yield await offline_host(
            *PLUGINS, data_dir=tmp_path, http={"enabled": False}, agents=AGENTS, plugins=SETTINGS
        )
        return
    server = request.getfixturevalue("pg_server_uri")
    async with fresh_schema(server, "replay") as schema:
        host = await offline_host(
            "postgres",
            *PLUGINS,
            data_dir=tmp_path,
            http={"enabled": False},
            agents=AGENTS,
            services={"database": "postgres"},
            plugins={**SETTINGS, "postgres": {"url": schema_uri(server, schema)}},
        )
        yield host
        await host.stop()  # before its schema goes


async def flush(host: Host) -> None:
    plugin = host.loader.loaded["audit"].instance
    assert isinstance(plugin, AuditPlugin)
    await plugin.flush()


async def replay(host: Host, agent: UUID, room: UUID | None = None) -> list[str]:
    await flush(host)
    store = await host.container.aresolve(EVENT_STORE)
    report = await replay_conversation(
        store,
        str(agent),
        host_runtime_factory(host, store, str(agent)),
        room_id=room,
        fallback=host.models,
    )
    return report.lines() if not report.ok else []


async def test_knowledge_added_during_the_conversation_is_not_seen_before_it(host: Host) -> None:
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    knowledge = await host.container.aresolve(KNOWLEDGE)
    room, user = uuid4(), uuid4()
    for i, text in enumerate(TEXTS):
        if i == 3:
            await knowledge.add_text("The office opens at nine.", "hours.md", runtime.agent_id)
        await runtime.process_message(runtime.new_message(text, room_id=room, entity_id=user))
    assert await replay(host, runtime.agent_id) == []


async def test_a_memory_deleted_during_the_conversation_is_gone_after_it(host: Host) -> None:
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    room, user = uuid4(), uuid4()
    first = None
    for i, text in enumerate(TEXTS):
        if i == 4:
            assert first is not None and await delete_memory(runtime, first)
        message = runtime.new_message(text, room_id=room, entity_id=user)
        first = first or message.id
        await runtime.process_message(message)
    assert await replay(host, runtime.agent_id) == []


async def test_a_reply_deleted_during_the_conversation_is_gone_after_it(host: Host) -> None:
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    room, user = uuid4(), uuid4()
    for i, text in enumerate(TEXTS):
        if i == 4:
            replies = await runtime.database.get_memories(
                MemoryQuery(agent_id=runtime.agent_id, entity_id=runtime.agent_id, order="asc")
            )
            assert await delete_memory(runtime, replies[0].id)
        await runtime.process_message(runtime.new_message(text, room_id=room, entity_id=user))
    assert await replay(host, runtime.agent_id) == []


async def test_a_room_replayed_alone_sees_what_the_speaker_said_elsewhere(host: Host) -> None:
    """``--room``: recall's ``entity`` scope (on by default) finds the user's messages of their
    other rooms; they are re-run too (unreported), as they stood at each message."""
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    rooms, user = (uuid4(), uuid4()), uuid4()
    for i, text in enumerate(TEXTS):
        await runtime.process_message(
            runtime.new_message(text, room_id=rooms[i % 2], entity_id=user)
        )
    for room, count in zip(rooms, (4, 3), strict=True):
        await flush(host)
        store = await host.container.aresolve(EVENT_STORE)
        report = await replay_conversation(
            store,
            str(runtime.agent_id),
            host_runtime_factory(host, store, str(runtime.agent_id)),
            room_id=room,
            fallback=host.models,
        )
        assert report.ok, "\n".join(report.lines())
        assert report.messages == count
        assert report.substituted == count  # one text call a message of the room


@pytest.mark.parametrize("path", ["agenthost.sqlite3", "absolute"])
async def test_equal_scores_rank_as_they_did(
    tmp_path: Path, offline_host: OfflineHosts, path: str
) -> None:
    """A user saying "yes" again and again: recall's k best include equal scores; which of them
    make the prompt is the store's to say, and the replay's store says it as the recorded one
    did (the configured store's kind, its own scoped search), also when the configured file is
    an absolute path (the replay's is then its own file all the same). SQLite only: on
    PostgreSQL the replay's store is in-memory, and ties at the k-th place may rank otherwise
    (documented)."""
    file = str(tmp_path / "elsewhere.sqlite3") if path == "absolute" else path
    host = await offline_host(
        *PLUGINS,
        data_dir=tmp_path,
        http={"enabled": False},
        agents=AGENTS,
        plugins={**SETTINGS, "sqlite": {"path": file}},
    )
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    room, user = uuid4(), uuid4()
    for text in ["yes", "I see", "yes", "no", "yes", "yes", "ok", "yes", "yes", "no", "yes"]:
        await runtime.process_message(runtime.new_message(text, room_id=room, entity_id=user))
    assert await replay(host, runtime.agent_id) == []


async def test_scopes_across_rooms_and_users(tmp_path: Path, offline_host: OfflineHosts) -> None:
    recall = {"threshold": -1.0, "k": 4, "scopes": ["agent", "entity"]}
    host = await offline_host(
        *PLUGINS,
        data_dir=tmp_path,
        http={"enabled": False},
        agents=AGENTS,
        plugins={**SETTINGS, "recall": recall},
    )
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    rooms, users = [uuid4(), uuid4(), uuid4()], [uuid4(), uuid4()]
    for i, text in enumerate(TEXTS * 2):
        message = runtime.new_message(text, room_id=rooms[i % 3], entity_id=users[i % 2])
        await runtime.process_message(message)
    assert await replay(host, runtime.agent_id) == []


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the SQLite file at `path`."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: db.execute(f'SELECT * FROM "{n}" ORDER BY rowid').fetchall() for n in names}


async def test_the_replay_writes_nothing_to_the_configured_store_nor_beside_it(
    tmp_path: Path, offline_host: OfflineHosts
) -> None:
    """The configured SQLite file is as it was, row for row, after a replay whose conversation
    had knowledge added and a memory deleted midway; the replay's own SQLite file goes in a
    temporary directory of its own, also when the configured path climbs out of the data dir."""
    outside = f"../{uuid4()}.sqlite3"
    host = await offline_host(
        *PLUGINS,
        data_dir=tmp_path / "data",
        http={"enabled": False},
        agents=AGENTS,
        plugins={**SETTINGS, "sqlite": {"path": outside}},
    )
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    knowledge = await host.container.aresolve(KNOWLEDGE)
    room, user = uuid4(), uuid4()
    for i, text in enumerate(TEXTS):
        if i == 2:
            await knowledge.add_text("The office opens at nine.", "hours.md", runtime.agent_id)
        message = runtime.new_message(text, room_id=room, entity_id=user)
        await runtime.process_message(message)
        if i == 4:
            assert await delete_memory(runtime, message.id)
    await flush(host)
    stored = tmp_path / outside.removeprefix("../")
    before = rows(stored)
    assert await replay(host, runtime.agent_id) == []
    assert rows(stored) == before
    assert not (Path(tempfile.gettempdir()) / outside.removeprefix("../")).exists()


async def test_conversations_at_once_see_each_other_as_they_did(
    tmp_path: Path, offline_host: OfflineHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three users talking at once in rooms of their own, recall's ``agent`` scope on, the text
    model taking a while (as a real one does): a message's prompt saw the other rooms' memories
    stored before it, not those stored while the model answered it; the replay, one message at
    a time in the order they were stored, hides those from it. (The trail cannot tell whether
    a memory stored between a message's own store and its prompt was seen: a lock held from a
    message's embedding to its text model call keeps other conversations out of that span.)"""
    recall = {"threshold": 0.01, "k": 4, "scopes": ["room", "agent"]}
    host = await offline_host(
        *PLUGINS,
        data_dir=tmp_path,
        http={"enabled": False},
        agents=AGENTS,
        plugins={**SETTINGS, "recall": recall},
    )
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    answer = host.models.use_model
    span = asyncio.Lock()
    holding: set[asyncio.Task[Any] | None] = set()

    async def in_turn(model_type: Any, params: Any, **options: Any) -> Any:
        task = asyncio.current_task()
        if model_type.name == "text_embedding" and task not in holding:
            await span.acquire()  # a message's (or reply's) store, and its prompt
            holding.add(task)
        elif model_type.name == "text_large":
            holding.discard(task)
            span.release()
            await asyncio.sleep(0.01)  # the other conversations go on meanwhile
        return await answer(model_type, params, **options)

    monkeypatch.setattr(host.models, "use_model", in_turn)

    async def talk(name: str, offset: int) -> None:
        room, user = uuid4(), uuid4()
        for text in TEXTS[offset:] + TEXTS[:offset]:
            message = runtime.new_message(f"{name}: {text}", room_id=room, entity_id=user)
            await runtime.process_message(message)
        holding.discard(asyncio.current_task())
        span.release()  # its last reply's

    await asyncio.gather(*(talk(name, at) for at, name in enumerate(("Ann", "Bob", "Cid"))))
    monkeypatch.setattr(host.models, "use_model", answer)
    assert await replay(host, runtime.agent_id) == []
