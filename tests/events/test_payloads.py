"""Payloads: what the event store records (JSON) comes back as the same payload through emit,
and failures are logged with the plugin and the event."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from contracts.events import (
    ACTION_COMPLETED,
    AGENT_STARTED,
    HANDLER_FAILED,
    MEMORY_CREATED,
    MESSAGE_SENT,
    PLUGIN_FAILED,
    PLUGIN_RELOADED,
    ActionCompletedPayload,
    AgentPayload,
    Event,
    EventPayload,
    HandlerFailedPayload,
    MemoryPayload,
    MessagePayload,
    PayloadTypeError,
    PluginFailedPayload,
    PluginReloadedPayload,
)
from contracts.memory import Content, Memory
from host.events import EventBus

ids = st.uuids()
texts = st.text(max_size=40)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), texts)
memories = st.builds(
    Memory,
    id=ids,
    agent_id=ids,
    entity_id=ids,
    room_id=ids,
    content=st.builds(Content, text=texts),
    embedding=st.none() | st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=4),
    metadata=st.dictionaries(st.text(min_size=1, max_size=8), json_scalars, max_size=3),
)


async def _replayed(event: Event[Any], payload: EventPayload) -> EventPayload:
    """Emit `payload` as the event store stores it (a JSON dict) and return what a handler got."""
    bus = EventBus()
    got: list[EventPayload] = []
    bus.on(event, got.append)
    stored: object = payload.model_dump(mode="json")
    await bus.emit(event, stored)  # type: ignore[misc]
    assert len(got) == 1 and type(got[0]) is event.payload
    return got[0]


@settings(max_examples=40, deadline=None)
@given(
    memory=memories, timings=st.dictionaries(st.sampled_from(["model", "total"]), st.floats(0, 9))
)
async def test_message_and_memory_payloads_survive_a_json_round_trip(
    memory: Memory, timings: dict[str, float]
) -> None:
    sent = MessagePayload(
        agent_id=memory.agent_id,
        room_id=memory.room_id,
        entity_id=memory.entity_id,
        message=memory,
        in_reply_to=uuid4(),
        timings=timings,
    )
    assert await _replayed(MESSAGE_SENT, sent) == sent
    created = MemoryPayload(
        agent_id=memory.agent_id,
        room_id=memory.room_id,
        entity_id=memory.entity_id,
        memory_id=memory.id,
        table_name=memory.table_name,
        memory=memory,
    )
    assert await _replayed(MEMORY_CREATED, created) == created


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        (AGENT_STARTED, AgentPayload(agent_id=uuid4(), name="eliza")),
        (
            ACTION_COMPLETED,
            ActionCompletedPayload(
                agent_id=uuid4(), room_id=uuid4(), entity_id=uuid4(), message_id=uuid4(),
                action="REPLY", plugin="eliza", success=False, duration=0.25, error="boom",
            ),
        ),
        (PLUGIN_FAILED, PluginFailedPayload(name="w", stage="setup", error="x", line=3)),
        (PLUGIN_RELOADED, PluginReloadedPayload(name="w", duration=0.1, version="1.0")),
        (HANDLER_FAILED, HandlerFailedPayload(event="a:b", handler="h", error="e", timed_out=True)),
    ],
)  # fmt: skip
async def test_other_builtin_payloads_survive_a_json_round_trip(
    event: Event[Any], payload: EventPayload
) -> None:
    assert await _replayed(event, payload) == payload


async def test_a_bad_field_from_untyped_code_names_event_field_and_problem() -> None:
    bus = EventBus()
    bad: object = {"name": "w", "stage": "lunch", "error": "x"}
    with pytest.raises(PayloadTypeError, match=r"'plugin:failed'.*stage") as caught:
        await bus.emit(PLUGIN_FAILED, bad)  # type: ignore[misc]
    assert "PluginFailedPayload" in str(caught.value)
    extra: object = {"agent_id": str(uuid4()), "name": "x", "colour": "red"}
    with pytest.raises(PayloadTypeError, match="colour"):
        await bus.emit(AGENT_STARTED, extra)  # type: ignore[misc]


async def test_a_failure_is_logged_with_the_plugin_and_the_event() -> None:
    records: list[dict[str, Any]] = []
    sink = logger.add(lambda message: records.append(message.record), level="ERROR")
    try:
        bus = EventBus()

        def broken(payload: AgentPayload) -> None:
            raise KeyError("city")

        bus.on(AGENT_STARTED, broken, owner="weather")
        await bus.emit(AGENT_STARTED, AgentPayload(agent_id=UUID(int=1), name="eliza"))
    finally:
        logger.remove(sink)
    [record] = records
    assert record["extra"]["plugin"] == "weather"
    assert record["extra"]["event"] == "agent:started"
    assert "KeyError" in record["message"] and record["exception"] is not None
