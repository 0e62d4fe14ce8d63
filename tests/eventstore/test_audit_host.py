"""The audit plugin in a real host (ELIZA + SQLite + audit, real files): a conversation's trail,
state rebuilt from it, a replay with the recorded model outputs, and the ``events`` CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from click.testing import Result
from loguru import logger
from typer.testing import CliRunner

from builtin_plugins.audit import AuditPlugin
from builtin_plugins.inmemory import InMemoryAdapter
from contracts.eventstore import EVENT_STORE, DomainEvent, EventStore
from contracts.storage import DATABASE
from host.app import Host
from host.cli import app as root_app
from host.cli_events import events_app
from host.events import EventBus
from host.eventstore import SqliteEventStore
from host.eventstore.rebuild import compare_room, rebuild_room
from host.eventstore.replay import Processor, ReplayParts, replay_conversation
from host.runtime import AgentRuntime
from host.testing import OfflineHosts

TEXTS = ["Hello there", "I feel sad about my job", "My mother never listens to me"]


@pytest.fixture
async def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_host: OfflineHosts) -> Host:
    monkeypatch.setenv("AGENTHOST_DATA_DIR", str(tmp_path))
    return await offline_host("audit", data_dir=tmp_path, http={"enabled": False})


async def converse(host: Host, room: UUID) -> list[tuple[UUID, str]]:
    assert host.agents is not None
    runtime = host.agents.get("Eliza")
    user = uuid4()
    out = []
    for text in TEXTS:
        message = runtime.new_message(text, room_id=room, entity_id=user)
        reply = await runtime.process_message(message)
        out.append((message.id, reply.text))
    plugin = host.loader.loaded["audit"].instance
    assert isinstance(plugin, AuditPlugin)
    await plugin.flush()
    return out


async def cli(args: list[str]) -> Result:
    """Run ``agenthost events`` (it calls asyncio.run, so on a thread of its own)."""
    return await asyncio.to_thread(CliRunner().invoke, events_app, args)


def runtime_factory(host: Host, agent_id: UUID) -> Any:
    @contextlib.asynccontextmanager
    async def make(parts: ReplayParts) -> AsyncIterator[Processor]:
        assert host.agents is not None
        live = host.agents.get("Eliza")
        database = InMemoryAdapter()
        scope = host.container.create_scope("agent")
        runtime = AgentRuntime(
            character=live.character,
            scope=scope,
            events=EventBus(),
            models=parts.models,
            database=database,
            components=host.components,
            agent_id=agent_id,
            clock=parts.clock,
        )
        try:
            yield runtime
        finally:
            await runtime.stop(5.0)
            await scope.aclose()
            await database.close()

    return make


async def test_conversation_trail(host: Host) -> None:
    room = uuid4()
    exchanged = await converse(host, room)
    store = await host.container.aresolve(EVENT_STORE)
    assert host.agents is not None
    agent = str(host.agents.get("Eliza").agent_id)
    events = await store.get_events(agent)
    types = [e.event_type for e in events]
    assert types[0] == "agent:started"
    assert types.count("message:received") == 3 and types.count("message:sent") == 3
    assert "model:used" in types and "memory:created" in types
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    for message_id, reply_text in exchanged:
        mine = [e for e in events if e.correlation_id == message_id]
        kinds = {e.event_type for e in mine}
        assert {"message:received", "model:used", "memory:created", "message:sent"} <= kinds
        [sent] = [e for e in mine if e.event_type == "message:sent"]
        assert sent.data["message"]["content"]["text"] == reply_text  # type: ignore[index, call-overload]
        assert all(e.metadata.get("room_id") == str(room) for e in mine)
    plugins = await store.get_events("host")
    assert {e.data["name"] for e in plugins if e.event_type == "plugin:loaded"} >= {"eliza"}


async def test_state_rebuilt_from_events_matches_the_store(host: Host) -> None:
    room = uuid4()
    await converse(host, room)
    store = await host.container.aresolve(EVENT_STORE)
    db = await host.container.aresolve(DATABASE)
    assert host.agents is not None
    agent = host.agents.get("Eliza").agent_id
    rebuilt = await rebuild_room(store, agent, room)
    assert [m.content.text for m in rebuilt][0::2] == TEXTS
    diff = await compare_room(db, agent, room, rebuilt)
    assert diff.ok and diff.matched == 6, diff.summary()
    await db.delete_memory(rebuilt[1].id)  # a write the trail never saw
    diff = await compare_room(db, agent, room, rebuilt)
    assert not diff.ok and [m.id for m in diff.missing] == [rebuilt[1].id]


async def test_replay_with_recorded_outputs_reproduces_the_conversation(host: Host) -> None:
    room = uuid4()
    await converse(host, room)
    store = await host.container.aresolve(EVENT_STORE)
    assert host.agents is not None
    agent = host.agents.get("Eliza").agent_id
    report = await replay_conversation(
        store, str(agent), runtime_factory(host, agent), fallback=host.models
    )
    assert report.ok, report.lines()
    assert report.messages == 3
    assert report.approximated == 0
    assert report.substituted >= 3  # text_large (and the embeddings) from the recording


async def test_replay_reports_divergence(host: Host, tmp_path: Path) -> None:
    """A recording whose second reply differs from what the agent does now."""
    room = uuid4()
    await converse(host, room)
    store = await host.container.aresolve(EVENT_STORE)
    assert host.agents is not None
    agent = host.agents.get("Eliza").agent_id
    altered = await SqliteEventStore.open(tmp_path / "altered.sqlite3")
    try:
        sent = 0
        async for e in store.iter_events(str(agent)):
            data = e.data
            if e.event_type == "message:sent":
                sent += 1
                if sent == 2:
                    data = json.loads(json.dumps(data).replace('"text": "', '"text": "CHANGED '))
            copy = DomainEvent.model_validate(
                e.model_dump() | {"data": data, "version": 0, "position": None}
            )
            await altered.append_event(copy)
        report = await replay_conversation(
            altered, str(agent), runtime_factory(host, agent), fallback=host.models
        )
    finally:
        await altered.close()
    assert not report.ok
    assert [d.kind for d in report.divergences] == ["reply"]
    assert "CHANGED" in report.divergences[0].detail
    assert "replay DIVERGES" in report.lines()[-1]


async def test_events_cli(host: Host, tmp_path: Path) -> None:
    room = uuid4()
    exchanged = await converse(host, room)
    assert host.agents is not None
    agent = str(host.agents.get("Eliza").agent_id)
    store: EventStore = await host.container.aresolve(EVENT_STORE)
    path = str(store.path)
    total = await store.last_position()

    listed = await cli(
        ["list", "--store", path, "--agent", agent, "--type", "message:sent", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["data"]["message"]["content"]["text"] for r in rows] == [t for _, t in exchanged]

    table = await cli(["list", "--store", path, "--from", str(total - 2)])
    assert table.exit_code == 0 and "message:sent" in table.output

    shown = await cli(["show", agent, "--store", path])
    assert shown.exit_code == 0 and "agent:started" in shown.output
    missing = await cli(["show", "nobody", "--store", path])
    assert missing.exit_code == 1 and "no events" in missing.output

    out = tmp_path / "trail.jsonl"
    exported = await cli(["export", str(out), "--store", path])
    assert exported.exit_code == 0
    assert len(out.read_text().splitlines()) == total

    default = await cli(["aggregates"])  # the configured store: data dir from the env
    assert default.exit_code == 0, default.output
    assert agent in default.output and "host" in default.output

    gone = await cli(["list", "--store", str(tmp_path / "nope.sqlite3")])
    assert gone.exit_code == 1 and "no event store" in gone.output


async def test_events_cli_reads_the_store_agenthost_event_store_names(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await converse(host, uuid4())
    store: EventStore = await host.container.aresolve(EVENT_STORE)
    total = await store.last_position()
    monkeypatch.setenv("AGENTHOST_EVENT_STORE", str(store.path))
    out = tmp_path / "elsewhere" / "trail.jsonl"
    out.parent.mkdir()
    monkeypatch.chdir(out.parent)  # no data dir here: only the variable can name the store
    monkeypatch.delenv("AGENTHOST_DATA_DIR")
    exported = await cli(["export", str(out)])
    assert exported.exit_code == 0, exported.output
    assert len(out.read_text().splitlines()) == total
    monkeypatch.setenv("AGENTHOST_EVENT_STORE", str(tmp_path / "missing.sqlite3"))
    missing = await cli(["export", str(out)])
    assert missing.exit_code != 0 and "missing.sqlite3" in missing.output


async def test_events_replay_cli(
    host: Host, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    room = uuid4()
    await converse(host, room)
    assert host.agents is not None
    agent = str(host.agents.get("Eliza").agent_id)
    store = await host.container.aresolve(EVENT_STORE)
    path = str(store.path)
    await host.stop()  # the CLI runs its own host on the same data dir
    capfd.readouterr()  # what the test's host logged
    logger.remove()  # loguru as a fresh process has it: every level to stderr
    logger.add(sys.stderr, level="DEBUG")
    # through the root command, as typed: no --log-level here, whatever an earlier test gave
    result = await asyncio.to_thread(
        CliRunner().invoke,
        root_app,
        ["events", "replay", agent, "--store", path, "--data-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert f"room {room}: 6 memories match the store" in result.output
    assert "replay matches the recording" in result.output
    # the replay's host logs only warnings beside its report
    logged = capfd.readouterr().err + result.output
    assert "plugin sqlite" not in logged and "| DEBUG" not in logged and "| INFO" not in logged


def test_events_replay_names_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("logging: [unclosed\n")
    result = CliRunner().invoke(root_app, ["--config", str(bad), "events", "replay", "Eliza"])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and str(bad) in result.output
    assert "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)
