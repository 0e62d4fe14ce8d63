"""The per-message service scope, reached from a plugin's components.

The installed distribution tests/fixtures/agenthost-scoped binds a message-scoped service
(`Visit`, an async generator: set up on first use, torn down when the message's scope closes)
and resolves it from its provider (``state.services``), its action and its evaluator
(``ctx.services``): one instance per message, shared by the three, torn down when the message
ends, whether processed, streamed or a stream closed early.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import uuid4

import pytest

from contracts.agent import State
from contracts.config import AgentsSettings, HostConfig, PluginsSettings
from contracts.services import ScopeClosedError, ScopeError
from host.app import Host
from host.config import LoadedConfig
from host.runtime import AgentRuntime


@pytest.fixture(scope="module")
def scoped_site(install_fixtures: Callable[..., Path]) -> Path:
    """The fixture distribution pip-installed (offline, no build isolation) into a temp dir."""
    return install_fixtures("scoped-site", "agenthost-scoped")


@pytest.fixture
async def scoped(scoped_site: Path, tmp_path: Path) -> AsyncIterator[tuple[Host, ModuleType]]:
    """A host loading sqlite, eliza and the installed ``scoped`` plugin through its entry point;
    with the plugin's module (its ``VISITS``)."""
    sys.path.insert(0, str(scoped_site))
    host: Host | None = None
    try:
        module = importlib.import_module("agenthost_scoped")
        config = HostConfig(
            data_dir=tmp_path,
            agents=AgentsSettings(characters_dir=tmp_path / "no-characters"),
            plugins=PluginsSettings(enabled=["sqlite", "eliza", "scoped"]),
        )
        host = Host(LoadedConfig(config, None))
        await host.start()
        assert {s.name: s.state for s in host.statuses}["scoped"] == "loaded"
        yield host, module
    finally:
        if host is not None:
            await host.stop()
        sys.path.remove(str(scoped_site))
        for name in [m for m in sys.modules if m.startswith("agenthost_scoped")]:
            del sys.modules[name]


def _agent(host: Host) -> AgentRuntime:
    assert host.agents is not None
    return host.agents.get("Eliza")


async def test_one_visit_per_message_shared_by_provider_action_and_evaluator(
    scoped: tuple[Host, ModuleType],
) -> None:
    host, module = scoped
    runtime = _agent(host)
    room, user = uuid4(), uuid4()
    first = await runtime.process_message(
        runtime.new_message("hello", room_id=room, entity_id=user)
    )
    second = await runtime.process_message(
        runtime.new_message("again", room_id=room, entity_id=user)
    )
    visits: list[Any] = module.VISITS
    assert [visit.number for visit in visits] == [1, 2]  # one per message, not per resolve
    for visit, reply in zip(visits, (first, second), strict=True):
        assert visit.seen == ["provider", "action", "evaluator"]
        assert visit.closed  # torn down when its message ended
        assert [(r.name, r.text) for r in reply.actions] == [("STAMP", f"(visit {visit.number})")]
        assert reply.text.endswith(f"(visit {visit.number})")
        audit = [r for r in reply.evaluators if r.name == "scoped.audit"]
        # the evaluator saw the message's visit still open: teardown comes after it
        assert [r.values for r in audit] == [{"visit": visit.number, "closed": False}]
    assert not reply.skipped_providers


async def test_a_streamed_message_has_its_visit_torn_down_also_when_closed_early(
    scoped: tuple[Host, ModuleType],
) -> None:
    host, module = scoped
    runtime = _agent(host)
    room, user = uuid4(), uuid4()
    stream = runtime.stream_message(runtime.new_message("I feel sad", room_id=room, entity_id=user))
    text = "".join([chunk async for chunk in stream])
    assert stream.reply is not None and text == stream.reply.text
    assert text.endswith("(visit 1)")
    visit = module.VISITS[0]
    assert visit.seen == ["provider", "action", "evaluator"] and visit.closed

    early = runtime.stream_message(
        runtime.new_message("I feel tired", room_id=room, entity_id=user)
    )
    chunks = aiter(early)
    assert await anext(chunks)  # the model is streaming: the message is in progress
    visit = module.VISITS[1]
    assert visit.seen == ["provider"] and not visit.closed
    await early.aclose()
    assert visit.closed and early.reply is None


async def test_services_outside_a_message_are_a_scope_error(
    scoped: tuple[Host, ModuleType],
) -> None:
    host, module = scoped
    runtime = _agent(host)
    with pytest.raises(ScopeError, match="no message scope"):
        _ = State().services  # a state made by hand
    with pytest.raises(ScopeError, match="message scope"):
        await runtime.scope.aresolve(module.VISIT)  # the agent's scope: no message open
    await runtime.process_message(runtime.new_message("hi", room_id=uuid4(), entity_id=uuid4()))
    plugin = host.loader.loaded["scoped"].instance
    kept = plugin.last_state  # type: ignore[attr-defined]
    with pytest.raises(ScopeClosedError):
        kept.services.resolve(module.VISIT)  # its message ended: the scope is closed
