"""A replay sees the conversation as it stood at each message (real host, SQLite files, audit).

``recall`` searches the memory store for every message. The configured store holds the whole
conversation by the time it is replayed; a replay reading it put later messages into earlier
prompts and reported every message as diverging. The replay's conversation tables come from
its own store, filled as it goes; other tables (knowledge) from the configured store, which
the replay leaves as it was.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from builtin_plugins.audit import AuditPlugin
from contracts.eventstore import EVENT_STORE
from contracts.knowledge import KNOWLEDGE
from contracts.memory import MemoryQuery
from contracts.storage import DATABASE
from host.app import Host
from host.cli import app as root_app
from host.eventstore.replay import host_runtime_factory, replay_conversation
from host.testing import OFFLINE_PLUGINS, OfflineHosts

from .replay_talk import AGENTS, PLUGINS, SETTINGS, TEXTS


@pytest.fixture
async def host(tmp_path: Path, offline_host: OfflineHosts) -> Host:
    return await offline_host(
        *PLUGINS, data_dir=tmp_path, http={"enabled": False}, agents=AGENTS, plugins=SETTINGS
    )


async def converse(host: Host) -> str:
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    room, user = uuid4(), uuid4()
    for text in TEXTS:
        await runtime.process_message(runtime.new_message(text, room_id=room, entity_id=user))
    plugin = host.loader.loaded["audit"].instance
    assert isinstance(plugin, AuditPlugin)
    await plugin.flush()
    return str(runtime.agent_id)


async def replay(host: Host, agent: str) -> list[str]:
    store = await host.container.aresolve(EVENT_STORE)
    report = await replay_conversation(
        store, agent, host_runtime_factory(host, store, agent), fallback=host.models
    )
    assert report.messages == len(TEXTS)
    return report.lines() if not report.ok else []


async def test_a_replay_recalls_only_what_was_said_before(host: Host) -> None:
    agent = await converse(host)
    assert await replay(host, agent) == []


async def test_knowledge_comes_from_the_store_and_the_replay_writes_nothing_to_it(
    host: Host,
) -> None:
    knowledge = await host.container.aresolve(KNOWLEDGE)
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    await knowledge.add_text("The office opens at nine.", "office-hours.md", runtime.agent_id)
    agent = await converse(host)
    database = await host.container.aresolve(DATABASE)
    before = await database.get_memories(MemoryQuery(agent_id=runtime.agent_id))
    assert await replay(host, agent) == []
    after = await database.get_memories(MemoryQuery(agent_id=runtime.agent_id))
    assert [m.id for m in after] == [m.id for m in before]


async def test_the_cli_replays_on_the_config_it_is_given(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``agenthost --config FILE events replay``: the replay's host is built from FILE (its
    data dir, plugins and history), not from the default configuration."""
    agent = await converse(host)
    await host.stop()  # the CLI runs its own host on the same data dir
    config = tmp_path / "replay.yaml"
    config.write_text(  # JSON is YAML
        json.dumps(
            {
                "data_dir": str(tmp_path),
                "agents": {"characters_dir": str(tmp_path / "characters"), **AGENTS},
                "plugins": {"enabled": [*OFFLINE_PLUGINS, *PLUGINS], **SETTINGS},
                "http": {"enabled": False},
            }
        )
    )
    monkeypatch.delenv("AGENTHOST_DATA_DIR", raising=False)
    monkeypatch.delenv("AGENTHOST_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no config/agenthost.yaml here to fall back on
    result = await asyncio.to_thread(
        CliRunner().invoke, root_app, ["--config", str(config), "events", "replay", agent]
    )
    assert result.exit_code == 0, result.output
    assert "14 memories match the store" in result.output
    assert "replay matches the recording" in result.output
