"""The test rig: the test kit's engine (`host.assembly`, as in the host: container, bus, the
ELIZA plugin, a SQLite file) with the default agent started, every event recorded, and
TEXT_LARGE answered by a scripted handler that falls back to ELIZA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

from contracts.memory import utc_now
from contracts.models import TEXT_LARGE, ModelHandler, TextParams, TextResult
from host.agents import AgentManager
from host.runtime import AgentRuntime
from host.testing import AgentTestBuilder, EventRecorder, MockModel, TestRuntime

PIPELINE_EVENTS = {
    "message:received",
    "memory:created",
    "action:started",
    "action:completed",
    "message:sent",
}


class Rig:
    """The engine's parts, the agents, what happened (`seen`) and what the model was asked."""

    def __init__(self, builder: AgentTestBuilder, runtime: TestRuntime, script: MockModel) -> None:
        assert builder.engine is not None and builder.agents is not None
        engine = self.engine = builder.engine
        self.container = engine.container
        self.bus = engine.events
        self.models = engine.models
        self.components = engine.components
        self.agents: AgentManager = builder.agents
        self.db = runtime.database
        self.mock = script
        """The TEXT_LARGE handler: its ``calls`` and ``prompts``."""
        self.scripted: list[str] = []
        assert builder.recorder is not None
        self.recorder: EventRecorder = builder.recorder

    @property
    def runtime(self) -> AgentRuntime:
        return self.agents.get("Eliza")

    @property
    def seen(self) -> list[tuple[str, Any]]:
        return [(event.name, payload) for event, payload in self.recorder.seen]

    @property
    def prompts(self) -> list[str]:
        return self.mock.prompts

    def payloads(self, name: str) -> list[Any]:
        return [payload for seen, payload in self.seen if seen == name]

    def names(self, name: str) -> list[str]:
        """Agent names in the payloads of event `name` (agent:started / agent:stopped)."""
        return [str(getattr(p, "name", None) or p.agent_name) for p in self.payloads(name)]

    def script_reply(self, text: str) -> None:
        """Make the next TEXT_LARGE call answer `text` instead of ELIZA."""
        self.scripted.append(text)


SCRIPT_PRIORITY = 10
"""The scripted TEXT_LARGE handler's: above ELIZA, below any handler a test registers."""


@asynccontextmanager
async def make_rig(database: str, *, real_time: bool = True) -> AsyncIterator[Rig]:
    """A `Rig` on `database` (``sqlite``: a temporary file); `real_time`: the host's clock and
    random ids (else the kit's step clock and sequential ids)."""
    builder = AgentTestBuilder().with_database(database).recording()
    if real_time:
        builder = builder.with_clock(utc_now).with_ids(uuid4)
    async with builder as runtime:
        assert builder.engine is not None
        eliza = builder.engine.loader.loaded["eliza"].instance
        scripted: list[str] = []

        async def answer(params: TextParams) -> TextResult:
            if scripted:
                return TextResult(text=scripted.pop(0))
            result: TextResult = await eliza.reply(params)
            return result

        script = MockModel(TEXT_LARGE, answer)
        handler = ModelHandler(TEXT_LARGE, script, script.stream, priority=SCRIPT_PRIORITY)
        builder.engine.models.register(handler, owner="script")
        rig = Rig(builder, runtime, script)
        rig.scripted = scripted
        yield rig
