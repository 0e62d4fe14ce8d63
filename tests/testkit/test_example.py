"""The example of docs/testing.md (the doc shows this file's block verbatim)."""

from __future__ import annotations

# --8<-- [start:example]
from typing import ClassVar

from contracts import Action, ActionContext, ActionResult, Manifest, Plugin
from contracts.events import ACTION_COMPLETED, MEMORY_CREATED, MESSAGE_RECEIVED, MESSAGE_SENT
from contracts.models import TEXT_LARGE
from contracts.storage import DatabaseAdapter
from host.testing import AgentTestBuilder


class GreetPlugin(Plugin):
    """The plugin under test: a GREET action that says how many memories the agent has."""

    manifest: ClassVar[Manifest] = Manifest(name="greet")

    def __init__(self, db: DatabaseAdapter) -> None:  # injected, as in the host
        self.db = db

    async def greet(self, ctx: ActionContext) -> ActionResult:
        count = await self.db.count_memories()
        return ActionResult(text=f"({count} memories so far)")

    def actions(self) -> list[Action]:
        return [Action("GREET", "greet the user", self.greet)]


async def test_testbot_answers_with_the_time() -> None:
    builder = (
        AgentTestBuilder()
        .with_character(name="TestBot", bio=["A bot under test."])
        .with_plugin(GreetPlugin)
        .mock_provider("time", "It is 2 PM")
        .mock_model(TEXT_LARGE, "Hello! It is 2 PM.\nACTIONS: GREET")
    )
    async with builder as runtime:
        with runtime.capture_events() as events:
            reply = await runtime.process_message("Hello!")

        assert reply.text == "Hello! It is 2 PM.\n(1 memories so far)"
        prompt = runtime.mock_models["text_large"].prompts[-1]
        assert "It is 2 PM" in prompt and "Hello!" in prompt and "GREET" in prompt
        events.assert_order(MESSAGE_RECEIVED, MEMORY_CREATED, ACTION_COMPLETED, MESSAGE_SENT)
        assert events.of(MESSAGE_RECEIVED)[0].message.content.text == "Hello!"
        assert events.of(ACTION_COMPLETED)[0].plugin == "greet"

        assert await runtime.clear_all_memories() == 2


async def test_with_the_fixtures(agent_builder: AgentTestBuilder) -> None:
    runtime = await agent_builder.with_plugin(GreetPlugin).mock_model(TEXT_LARGE, "[GREET]").build()
    assert (await runtime.process_message("Hi")).text == "(1 memories so far)"


# --8<-- [end:example]
