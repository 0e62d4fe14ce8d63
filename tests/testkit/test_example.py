"""The example of docs/testing.md (the doc shows this file's test verbatim)."""

from __future__ import annotations

from contracts.events import ACTION_COMPLETED, MEMORY_CREATED, MESSAGE_RECEIVED, MESSAGE_SENT
from contracts.models import TEXT_LARGE
from host.testing import AgentTestBuilder


# --8<-- [start:example]
async def test_testbot_answers_with_the_time() -> None:
    builder = (
        AgentTestBuilder()
        .with_character(name="TestBot", bio=["A bot under test."])
        .mock_provider("time", "It is 2 PM")
        .mock_model(TEXT_LARGE, "Hello! It is 2 PM.")
    )
    async with builder as runtime:
        with runtime.capture_events() as events:
            reply = await runtime.process_message("Hello!")

        assert reply.text == "Hello! It is 2 PM."
        prompt = runtime.mock_models["text_large"].prompts[-1]
        assert "It is 2 PM" in prompt and "Hello!" in prompt
        events.assert_order(MESSAGE_RECEIVED, MEMORY_CREATED, MESSAGE_SENT)
        assert events.of(MESSAGE_RECEIVED)[0].message.content.text == "Hello!"
        assert events.of(ACTION_COMPLETED) == []

        assert await runtime.clear_all_memories() == 2


# --8<-- [end:example]
