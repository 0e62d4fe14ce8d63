"""The test kit: builder options, mocks, determinism, plugins, fixtures, docs."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from uuid import uuid4

import pytest
from pydantic import BaseModel

from contracts.agent import (
    Action,
    ActionContext,
    ActionResult,
    CachePolicy,
    Character,
    CharacterError,
    Provider,
    ProviderResult,
    State,
)
from contracts.events import ACTION_COMPLETED, MESSAGE_SENT, MessagePayload
from contracts.logging import Logger
from contracts.memory import Memory, MemoryQuery
from contracts.models import TEXT_EMBEDDING, TEXT_LARGE, TextParams
from contracts.plugin import Manifest, Plugin
from contracts.storage import DatabaseAdapter
from host.pytest_plugin import POSTGRES_URL, schema_uri, store_backends
from host.testing import AgentTestBuilder, EventRecorder, ManualClock, TestRuntime

ROOT = Path(__file__).resolve().parents[2]


class GreeterSettings(BaseModel):
    greeting: str = "Hi"


class Greeter(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="greeter", settings=GreeterSettings)

    def __init__(self, db: DatabaseAdapter, log: Logger, settings: GreeterSettings) -> None:
        self.db, self.log, self.settings = db, log, settings

    async def greet(self, ctx: ActionContext) -> ActionResult:
        count = await self.db.count_memories()
        return ActionResult(text=f"{self.settings.greeting} ({count} memories)")

    async def mood(self, message: Memory, state: State) -> ProviderResult:
        return ProviderResult(text="Mood: cheerful")

    def actions(self) -> Sequence[Action]:
        return (Action("GREET", "greet the user", self.greet),)

    def providers(self) -> Sequence[Provider]:
        return (Provider("mood", self.mood),)


async def test_plugins_are_injected_and_configured() -> None:
    builder = (
        AgentTestBuilder()
        .with_plugin(Greeter)
        .with_settings(plugins={"greeter": {"greeting": "Salut"}})
        .mock_model(TEXT_LARGE, "Hello there\nACTIONS: GREET")
    )
    async with builder as runtime:
        with runtime.capture_events() as events:
            reply = await runtime.process_message("hi")
        assert reply.text == "Hello there\nSalut (1 memories)"
        completed = events.of(ACTION_COMPLETED)
        assert completed[0].action == "GREET" and completed[0].plugin == "greeter"
        assert "Mood: cheerful" in runtime.mock_models["text_large"].prompts[0]


async def test_a_failing_plugin_fails_the_build_with_its_reason() -> None:
    class Broken(Plugin):
        manifest: ClassVar[Manifest] = Manifest(name="broken")

        async def setup(self) -> None:
            raise RuntimeError("no weather service")

    with pytest.raises(RuntimeError, match=r"plugin broken failed to setup: .*no weather service"):
        async with AgentTestBuilder().with_plugin(Broken):
            pass


async def test_mock_model_lists_callables_and_recorded_calls() -> None:
    async with AgentTestBuilder().mock_model(
        TEXT_LARGE, ["first", lambda params: f"echo {params.prompt.splitlines()[-1]}"]
    ) as runtime:
        assert (await runtime.process_message("one")).text == "first"
        assert (await runtime.process_message("two")).text == "echo two"
        assert (await runtime.process_message("three")).text == "echo three"
        mock = runtime.mock_models["text_large"]
        assert len(mock.calls) == 3 and all(isinstance(c, TextParams) for c in mock.calls)
        runtime.set_mock_model(TEXT_LARGE, "replaced")
        assert (await runtime.process_message("four")).text == "replaced"
        embedding = runtime.set_mock_model(TEXT_EMBEDDING, "ignored")
        await runtime.process_message("five")
        assert embedding.calls  # the message and the reply were embedded through the mock


async def test_unmocked_models_are_eliza_offline() -> None:
    async with AgentTestBuilder() as runtime:
        reply = await runtime.process_message("Men are all alike.")
        assert reply.text == "In what way?"
        assert runtime.is_test


async def _run(database: str = "inmemory") -> list[tuple[str, str]]:
    async with AgentTestBuilder().with_database(database) as runtime:
        await runtime.process_message("I feel sad")
        rows = await runtime.database.get_memories(MemoryQuery(order="asc"))
        return [(str(m.id), m.created_at.isoformat()) for m in rows]


async def test_runs_are_deterministic_on_every_store() -> None:
    first = await _run()
    assert first == await _run()
    assert first == await _run("sqlite")
    assert first[0][1] == "2026-01-01T12:00:00+00:00"


async def test_recorder_assertions_explain_failures() -> None:
    async with AgentTestBuilder() as runtime:
        with runtime.capture_events() as events:
            await runtime.process_message("hello")
        events.assert_emitted(MESSAGE_SENT, times=1)
        with pytest.raises(AssertionError, match="action:completed emitted 0 times"):
            events.assert_emitted(ACTION_COMPLETED)
        with pytest.raises(AssertionError, match="not emitted after position"):
            events.assert_order(MESSAGE_SENT, ACTION_COMPLETED)
        sent: list[MessagePayload] = events.of(MESSAGE_SENT)
        assert sent[0].in_reply_to is not None


async def test_fixtures(
    agent_runtime: TestRuntime, event_capture: EventRecorder, memory_store: DatabaseAdapter
) -> None:
    await agent_runtime.process_message("hello")
    assert "message:sent" in event_capture.names()
    assert await memory_store.count_memories() == 0


def test_docs_show_the_example_test_verbatim() -> None:
    doc = (ROOT / "docs" / "testing.md").read_text()
    source = (Path(__file__).parent / "test_example.py").read_text()
    example = re.search(r"# --8<-- \[start:example\]\n(.*?)# --8<-- \[end:example\]", source, re.S)
    assert example is not None
    assert example.group(1).strip() in doc


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_an_external_test_suite_uses_the_fixtures(tmp_path: Path, mode: str) -> None:
    """The pytest11 plugin in a separate project: fixtures work in both asyncio modes."""
    marker = "@pytest.mark.asyncio\n" if mode == "strict" else ""
    (tmp_path / "test_external.py").write_text(
        "import pytest\n"
        "from contracts.models import TEXT_LARGE\n\n"
        f"{marker}async def test_bot(agent_builder):\n"
        "    runtime = await agent_builder.mock_model(TEXT_LARGE, 'pong').build()\n"
        "    reply = await runtime.process_message('ping')\n"
        "    assert reply.text == 'pong'\n\n"
        f"{marker}async def test_store(memory_store):\n"
        "    assert await memory_store.count_memories() == 0\n\n"
        f"{marker}async def test_events(agent_runtime, event_capture):\n"
        "    await agent_runtime.process_message('Men are all alike.')\n"
        "    assert 'message:sent' in event_capture.names()\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o",
         f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function",
         str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_external.py::test_bot PASSED" in done.stdout
    assert "test_external.py::test_events PASSED" in done.stdout
    backends = store_backends()
    assert {"inmemory", "sqlite", "postgres"} <= set(backends)  # every store agenthost installs
    for backend in backends:  # a real PostgreSQL too (pgserver), unless none can run here
        ran = f"test_external.py::test_store[{backend}] PASSED" in done.stdout
        assert ran or (backend == "postgres" and not _postgres_available()), done.stdout


def _postgres_available() -> bool:
    return bool(os.environ.get(POSTGRES_URL)) or importlib.util.find_spec("pgserver") is not None


async def test_with_character_calls_merge_and_bad_fields_are_named() -> None:
    builder = (
        AgentTestBuilder()
        .with_character(Character(name="Base", topics=["cats"]))
        .with_character(name="TestBot")
        .with_character(messageExamples=[[{"name": "u", "content": {"text": "hi"}}]], lore=["x"])
    )
    async with builder as runtime:
        character = runtime.character
        assert (character.name, character.topics) == ("TestBot", ["cats"])
        assert character.message_examples[0][0]["content"]["text"] == "hi"
        assert character.settings["lore"] == ["x"]  # unknown (ElizaOS) fields kept in settings
    with pytest.raises(CharacterError, match=r"AgentTestBuilder\.with_character[\s\S]*'topics'"):
        async with AgentTestBuilder().with_character(topics="not a list"):
            pass


async def _transcript(database: str) -> tuple[list[Any], list[Any]]:
    """One scripted conversation: every reply and every event, minus the measured durations."""

    async def note(ctx: ActionContext) -> ActionResult:
        return ActionResult(
            text=f"noted {len(ctx.previous)}", values={"room": str(ctx.message.room_id)}
        )

    builder = (
        AgentTestBuilder().with_database(database).mock_model(TEXT_LARGE, "Sure.\nACTIONS: NOTE")
    )
    async with builder as runtime:
        runtime.components.add("test", actions=[Action("NOTE", "take a note", note)])
        with runtime.capture_events() as events:
            replies = [await runtime.process_message(text) for text in ("one", "two")]
        durations = {"duration", "timings"}
        dumped = [
            r.model_dump(
                mode="json", exclude={"timings": True, "actions": {"__all__": {"duration"}}}
            )
            for r in replies
        ]
        seen = [(name, _without(p.model_dump(mode="json"), durations)) for name, p in events.seen]
        return dumped, seen


def _without(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


async def test_two_runs_give_the_same_replies_and_events() -> None:
    """Ids and times come from the kit's counter and step clock: only measured durations differ
    between runs (and between stores)."""
    first = await _transcript("inmemory")
    assert first == await _transcript("inmemory")
    assert first == await _transcript("sqlite")
    replies, _events = first
    assert replies[0]["message_id"] == "a6e70000-0000-0000-0000-000000000001"
    assert replies[1]["actions"][0]["text"] == "noted 0"


async def test_set_mock_provider_replaces_a_plugins_provider() -> None:
    async with AgentTestBuilder().with_plugin(Greeter).mock_model(TEXT_LARGE, "ok") as runtime:
        runtime.set_mock_provider("mood", ProviderResult(text="Mood: grumpy", values={"m": 1}))
        await runtime.process_message("hi")
        prompt = runtime.mock_models["text_large"].prompts[-1]
        assert "Mood: grumpy" in prompt and "cheerful" not in prompt
        assert [p.name for p in runtime.components.providers] == ["mood"]


async def test_streamed_replies_from_a_mocked_model_come_in_chunks() -> None:
    async with AgentTestBuilder().mock_model(TEXT_LARGE, "It is 2 PM now.") as runtime:
        stream = runtime.stream_message(
            runtime.new_message("time?", room_id=runtime.room_id, entity_id=runtime.user_id)
        )
        chunks = [chunk async for chunk in stream]
        # a trailing space waits for the next chunk: the reply may end there (and is stripped)
        assert chunks == ["It", " is", " 2", " PM", " now."]
        assert stream.reply is not None and stream.reply.text == "It is 2 PM now."
        assert len(runtime.mock_models["text_large"].calls) == 1


async def test_recorder_stops_at_the_end_of_the_block(tmp_path: Path) -> None:
    async with AgentTestBuilder().with_database(str(tmp_path / "kit.sqlite3")) as runtime:
        with runtime.capture_events() as events:
            await runtime.process_message("one")
        count = len(events.seen)
        await runtime.process_message("two")
        assert len(events.seen) == count
        assert await runtime.database.count_memories() == 4
    assert (tmp_path / "kit.sqlite3").exists()


async def test_provider_cache_policies_apply_as_in_the_host() -> None:
    calls: list[str] = []

    async def forecast(message: Memory, state: State) -> ProviderResult:
        calls.append(message.content.text)
        return ProviderResult(text=f"Forecast #{len(calls)}")

    provider = Provider("forecast", forecast, cache=CachePolicy(ttl=3600, scope="room"))
    async with AgentTestBuilder().mock_model(TEXT_LARGE, "ok") as runtime:
        runtime.components.add("weather", providers=[provider])
        await runtime.process_message("one")
        await runtime.process_message("two")  # same room: the cached result
        other = runtime.new_message("three", room_id=uuid4(), entity_id=runtime.user_id)
        await runtime.process_message(other)  # another room: computed again
        assert calls == ["one", "three"]
        assert all("Forecast #1" in p for p in runtime.mock_models["text_large"].prompts[:2])


async def test_cached_results_expire_only_when_the_test_advances_the_cache_clock() -> None:
    calls: list[str] = []

    async def forecast(message: Memory, state: State) -> ProviderResult:
        calls.append(message.content.text)
        return ProviderResult(text=f"Forecast #{len(calls)}")

    clock = ManualClock()
    provider = Provider("forecast", forecast, cache=CachePolicy(ttl=60, scope="room"))
    builder = AgentTestBuilder().with_cache_clock(clock).mock_model(TEXT_LARGE, "ok")
    async with builder as runtime:
        runtime.components.add("weather", providers=[provider])
        await runtime.process_message("one")
        clock.advance(59.5)
        await runtime.process_message("two")  # still within the TTL
        clock.advance(1)
        await runtime.process_message("three")  # past it: computed again
        assert calls == ["one", "three"]
    brief = Provider("forecast", forecast, cache=CachePolicy(ttl=0.001, scope="room"))
    async with AgentTestBuilder().mock_model(TEXT_LARGE, "ok") as runtime:
        runtime.components.add("weather", providers=[brief])
        await runtime.process_message("one")
        await asyncio.sleep(0.02)  # real time passes the TTL; the default cache clock does not
        await runtime.process_message("two")
        assert calls == ["one", "three", "one"]


async def test_database_urls_sqlite_and_postgres(tmp_path: Path, pg_server_uri: str) -> None:
    import psycopg

    schema = f"kit_{uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_server_uri, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    try:
        for url in (f"sqlite:///{tmp_path / 'kit.sqlite3'}", schema_uri(pg_server_uri, schema)):
            async with AgentTestBuilder().with_database(url) as runtime:
                await runtime.process_message("Men are all alike.")
                assert await runtime.database.count_memories() == 2
                assert await runtime.clear_all_memories() == 2
        assert (tmp_path / "kit.sqlite3").exists()
    finally:
        async with await psycopg.AsyncConnection.connect(pg_server_uri, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


async def test_settings_reach_the_runtime() -> None:
    builder = AgentTestBuilder().with_settings(agents={"history": 1}).mock_model(TEXT_LARGE, "ok")
    async with builder as runtime:
        for text in ("first", "second", "third"):
            await runtime.process_message(text)
        prompt = runtime.mock_models["text_large"].prompts[-1]
        assert "first" not in prompt and "second" not in prompt  # one message of history: a reply
        assert runtime.settings.history == 1


def test_store_backends_are_the_installed_ones_narrowed_by_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTHOST_TEST_BACKENDS", raising=False)
    assert store_backends() == ["inmemory", "sqlite", "postgres"]
    monkeypatch.setenv("AGENTHOST_TEST_BACKENDS", "sqlite, inmemory")
    assert store_backends() == ["inmemory", "sqlite"]
    monkeypatch.setenv("AGENTHOST_TEST_BACKENDS", "sqlite,mongo")
    with pytest.raises(pytest.UsageError, match="names mongo; installed backends: inmemory"):
        store_backends()
