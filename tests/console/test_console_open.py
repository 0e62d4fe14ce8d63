"""A host without an API key: the console is open like the API, and still refuses state changes
without its session's CSRF token (a page on another site could otherwise post to it); the
console's figures and prompt sections in isolation."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.config import AgentsSettings, HostConfig, HttpSettings, PluginsSettings
from contracts.memory import Memory, MemoryQuery
from host.app import Host
from host.config import LoadedConfig
from host.console.charts import History, bars, sparkline
from host.console.inputs import local_target
from host.console.records import prompt_sections
from host.console.rooms import RoomIndex
from host.http_manage import delete_memory, delete_room_memories, list_rooms


async def _host(tmp_path: Path, *plugins: str) -> Host:
    config = HostConfig(
        data_dir=tmp_path / "data",
        http=HttpSettings(port=0),
        agents=AgentsSettings(characters_dir=tmp_path / "none"),
        plugins=PluginsSettings(enabled=list(plugins)),
    )
    host = Host(LoadedConfig(config, None))
    await host.start(http=True)
    return host


@pytest.fixture
async def open_host(tmp_path: Path) -> AsyncIterator[Host]:
    """No API key; ELIZA, SQLite and the audit trail."""
    host = await _host(tmp_path, "sqlite", "eliza", "audit")
    try:
        yield host
    finally:
        await host.stop()


async def test_open_console_still_needs_the_csrf_token(open_host: Host) -> None:
    assert open_host.http is not None
    async with httpx.AsyncClient(base_url=open_host.http.url, timeout=30) as client:
        form = {"agent": "Eliza", "text": "hello"}
        cold = await client.post("/console/chat/send", data=form)
        assert cold.status_code == 403 and "no console session" in cold.json()["detail"]
        assert (await client.get("/login?next=/console/agents")).headers["location"] == (
            "/console/agents"
        )
        page = await client.get("/")
        assert page.status_code == 200 and "agenthost_console" in page.headers["set-cookie"]
        assert "Log out" not in page.text  # nothing to log out of
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert token is not None
        refused = await client.post("/console/chat/send", data=form)
        assert refused.status_code == 403
        sent = await client.post(
            "/console/chat/send", data=form, headers={"X-CSRF-Token": token.group(1)}
        )
        assert sent.status_code == 200
        turn = re.search(r'sse-connect="(/console/stream/[^"]+)"', sent.text)
        assert turn is not None
        async with client.stream("GET", turn.group(1)) as stream:
            body = "".join([chunk async for chunk in stream.aiter_text()])
        assert body.count("event: chunk") >= 2 and "event: reply" in body
        assert body.index("event: reply") < body.index("event: done")
        again = await client.get(turn.group(1))  # a reconnect after the reply only closes
        assert "event: done" in again.text and "event: chunk" not in again.text


def test_prompt_sections_split_at_headings() -> None:
    prompt = "# About Eliza\nA listener.\n\nEliza is patient.\n\n# Message from ann\nhi\n\nthere"
    assert prompt_sections(prompt) == [
        ("About Eliza", "A listener.\n\nEliza is patient."),
        ("Message from ann", "hi\n\nthere"),
    ]
    assert prompt_sections("just text") == [("", "just text")]


def test_rate_history_and_chart_geometry() -> None:
    history = History(size=3)
    assert history.add(0, now=10.0) == 0.0
    assert history.add(10, now=12.0) == 5.0
    assert history.add(10, now=12.1) == 5.0  # two reads at once: the same figure
    assert history.add(16, now=14.0) == 3.0
    assert history.add(16, now=16.0) == 0.0
    assert list(history.rates) == [5.0, 3.0, 0.0]
    points = sparkline([0.0, 5.0, 2.5], width=100, height=50)
    assert points == "0.0,48.0 50.0,2.0 100.0,25.0"
    drawn = bars([("model", 0.2), ("total", 0.4)], width=200)
    assert [b.width for b in drawn] == [100.0, 200.0] and drawn[1].text == "400.0 ms"


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_login_redirect_target_is_always_a_local_path(target: str) -> None:
    local = local_target(target)
    assert local.startswith("/") and not local.startswith("//")
    assert local in (target, "/")


@given(
    st.lists(
        st.tuples(st.text("ab ", min_size=1, max_size=8), st.text("xy \n", max_size=30)),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=200, deadline=None)
def test_prompt_sections_split_any_prompt_back_into_its_blocks(
    blocks: list[tuple[str, str]],
) -> None:
    prompt = "\n\n".join(f"# {heading}\n{body}" for heading, body in blocks)
    assert prompt_sections(prompt) == [(heading.strip(), body) for heading, body in blocks]


async def test_room_index_follows_the_bus_and_rescans_when_old(open_host: Host) -> None:
    assert open_host.agents is not None
    runtime = open_host.agents.get("Eliza")
    index = RoomIndex(open_host.events)
    first, second, user = uuid4(), uuid4(), uuid4()

    def message(text: str, room: UUID) -> Memory:
        return runtime.new_message(text, room_id=room, entity_id=user)

    await runtime.process_message(message("I feel sad", first))
    assert [(r.room_id, r.memories) for r in await index.rooms(runtime)] == [(first, 2)]
    await runtime.process_message(message("my mother", second))
    await runtime.process_message(message("I dream", first))
    rooms = await index.rooms(runtime)  # from the events, no scan
    assert [(r.room_id, r.memories) for r in rooms] == [(first, 4), (second, 2)]
    page = await runtime.database.get_memories(MemoryQuery(room_id=second, limit=1))
    assert await delete_memory(runtime, page[0].id)
    assert [(r.room_id, r.memories) for r in await index.rooms(runtime)] == [
        (first, 4),
        (second, 1),
    ]
    assert await delete_room_memories(runtime, second) == 1
    assert [r.room_id for r in await index.rooms(runtime)] == [first]
    # written past the bus: seen at the next scan, once the index is older than its ttl
    stray = message("stray", second)
    await runtime.database.create_memory(stray)
    assert [r.room_id for r in await index.rooms(runtime)] == [first]
    index.ttl = 0
    assert {r.room_id for r in await index.rooms(runtime)} == {first, second}
    assert await list_rooms(runtime) == await index.rooms(runtime)
    for subscription in index.subscriptions:
        subscription.cancel()


async def test_every_page_answers_with_no_agent_running(open_host: Host) -> None:
    assert open_host.agents is not None and open_host.http is not None
    await open_host.agents.stop("Eliza")
    async with httpx.AsyncClient(base_url=open_host.http.url, timeout=30) as client:
        for path in (
            "/",
            "/console/memories",
            "/console/timeline",
            "/console/agents",
            "/console/plugins",
            "/console/metrics",
            "/console/fragments/metrics",
        ):
            page = await client.get(path)
            assert page.status_code == 200, (path, page.text[-500:])
        chat = (await client.get("/")).text
        assert "No agent is running" in chat
        assert "stopped" in (await client.get("/console/agents")).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', chat)
        assert token is not None
        refused = await client.post(
            "/console/chat/send",
            data={"agent": "Eliza", "text": "anyone?"},
            headers={"X-CSRF-Token": token.group(1)},
        )
        assert refused.status_code == 422 and "Pick a running agent." in refused.text


async def test_without_an_event_store_the_console_says_so(tmp_path: Path) -> None:
    host = await _host(tmp_path, "sqlite", "eliza")  # no audit plugin: no event store
    try:
        assert host.agents is not None and host.http is not None
        runtime = host.agents.get("Eliza")
        reply = await runtime.process_message(
            runtime.new_message("hello", room_id=uuid4(), entity_id=uuid4())
        )
        async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as client:
            timeline = await client.get(f"/console/timeline?room={reply.room_id}")
            assert timeline.status_code == 200 and "No event store" in timeline.text
            saw = await client.get(f"/console/agents/Eliza/saw/{reply.message_id}")
            assert saw.status_code == 200 and "No event store" in saw.text
    finally:
        await host.stop()


def test_screenshots_leave_the_worktree_clean_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from .conftest import ROOT, SCREENSHOTS_ENV, screenshot_dir

    monkeypatch.delenv(SCREENSHOTS_ENV, raising=False)
    assert not screenshot_dir().resolve().is_relative_to(ROOT)  # a test run writes no docs
    monkeypatch.setenv(SCREENSHOTS_ENV, "docs/console")
    assert screenshot_dir() == ROOT / "docs" / "console"


def test_the_replay_runtime_factory_is_public() -> None:
    """The console builds its replay runtimes with it (no private import across packages)."""
    from host.eventstore import replay

    assert "host_runtime_factory" in replay.__all__
    assert callable(replay.host_runtime_factory)
