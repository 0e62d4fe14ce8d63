"""The test rig: a real runtime assembled from real parts (container, bus, ELIZA, SQLite file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.sqlite import SqliteAdapter
from contracts.events import EVENTS, Event, EventPayload
from contracts.models import MODELS, TEXT_LARGE, ModelHandler, TextChunk, TextParams, TextResult
from contracts.storage import DATABASE
from host.agents import AgentManager
from host.characters import default_character
from host.components import ComponentRegistry
from host.di import Container
from host.events import EventBus
from host.models import ModelRegistry
from host.runtime import AgentRuntime
from host.testing import AgentTestBuilder, EventRecorder, MockModel, TestRuntime

PIPELINE_EVENTS = {
    "message:received",
    "memory:created",
    "action:started",
    "action:completed",
    "message:sent",
}


@dataclass
class Rig:
    container: Container
    bus: EventBus
    models: Any
    db: SqliteAdapter
    components: ComponentRegistry
    agents: AgentManager
    seen: list[tuple[str, Any]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    scripted: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> AgentRuntime:
        return self.agents.get("Eliza")

    def payloads(self, name: str) -> list[Any]:
        return [payload for seen, payload in self.seen if seen == name]

    def names(self, name: str) -> list[str]:
        """Agent names in the payloads of event `name` (agent:started / agent:stopped)."""
        return [str(getattr(p, "name", None) or p.agent_name) for p in self.payloads(name)]

    def script_reply(self, text: str) -> None:
        """Make the next TEXT_LARGE call answer `text` instead of ELIZA."""
        self.scripted.append(text)


async def build_rig(tmp_path: Path) -> Rig:
    """Container, bus, model registry with the real ELIZA plugin (behind a handler that records
    prompts and can be scripted), a real SQLite file, and the default agent started."""
    container = Container()
    bus = EventBus()
    models = ModelRegistry(events=bus)
    eliza = ElizaPlugin()
    for handler in eliza.models():
        models.register(handler, owner="eliza")
    db = await SqliteAdapter.open(tmp_path / "rig.sqlite3")
    components = ComponentRegistry()
    container.provide(DATABASE, db, owner="test")
    container.provide(MODELS, models, owner="test")
    container.provide(EVENTS, bus, owner="test")
    agents = AgentManager(container, bus, components, characters=[default_character()])
    rig = Rig(container, bus, models, db, components, agents)

    async def scripted(params: TextParams) -> TextResult:
        rig.prompts.append(params.prompt or "")
        if rig.scripted:
            return TextResult(text=rig.scripted.pop(0))
        return await eliza.reply(params)

    async def stream(params: TextParams) -> AsyncIterator[TextChunk]:
        result = await scripted(params)
        for index, word in enumerate(result.text.split(" ")):
            yield TextChunk(text=word if index == 0 else " " + word, index=index)

    models.register(ModelHandler(TEXT_LARGE, scripted, stream, priority=10), owner="script")

    def record(event: Event[Any], payload: EventPayload) -> None:
        rig.seen.append((event.name, payload))

    bus.on_any(record)
    await agents.start("Eliza")
    return rig


class KitRig:
    """The same surface as `Rig`, built with the test kit (`host.testing`): the single-agent
    pipeline tests run on the kit that plugin authors use (dogfooding)."""

    def __init__(self, runtime: TestRuntime, recorder: EventRecorder, mock: MockModel) -> None:
        self.runtime = runtime
        self.recorder = recorder
        self.mock = mock
        self.scripted: list[str] = []
        self.components = runtime.components
        self.db = runtime.database
        self.bus = runtime.events
        self.models = runtime.registry
        parent = runtime.scope.parent
        assert parent is not None
        self.container = parent

    @property
    def seen(self) -> list[tuple[str, Any]]:
        return [(event.name, payload) for event, payload in self.recorder.seen]

    @property
    def prompts(self) -> list[str]:
        return self.mock.prompts

    def payloads(self, name: str) -> list[Any]:
        return [payload for seen, payload in self.seen if seen == name]

    def script_reply(self, text: str) -> None:
        self.scripted.append(text)


@asynccontextmanager
async def kit_rig() -> AsyncIterator[KitRig]:
    """A `KitRig`: the kit's runtime on a SQLite file, TEXT_LARGE answered by ELIZA unless a
    reply is scripted, every event recorded."""
    eliza = ElizaPlugin()
    scripted: list[str] = []

    async def answer(params: TextParams) -> TextResult:
        if scripted:
            return TextResult(text=scripted.pop(0))
        return await eliza.reply(params)

    builder = AgentTestBuilder().with_database("sqlite").mock_model(TEXT_LARGE, answer)
    async with builder as runtime:
        with runtime.capture_events() as recorder:
            rig = KitRig(runtime, recorder, runtime.mock_models[TEXT_LARGE.name])
            rig.scripted = scripted
            yield rig
