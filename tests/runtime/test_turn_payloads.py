"""The payloads, the reply's memory and the `Reply` a turn assembles without validating
(host/turn_payloads.py), and the params and state it builds so (host/memory_writer.py,
host/prompt.py, host/state.py), equal the validated models, fields set included, and serialize
alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel, ValidationError

from builtin_plugins.sqlite.rows import lazy_rows_to_memories, row_to_memory
from contracts.agent import ActionResult, Character, Reply, State
from contracts.events import MemoryPayload, MessagePayload
from contracts.memory import Content, Memory
from contracts.models import EmbeddingParams, TextParams
from contracts.vector import Vector
from host.memory import content_json, metadata_json
from host.memory_writer import _embedded, _params
from host.prompt import reply_params
from host.state import _state
from host.turn_payloads import (
    memory_payload,
    message_payload,
    reply_memory,
    reply_of,
    sent_payload,
)

AGENT, ROOM, USER = uuid4(), uuid4(), uuid4()


def same(built: BaseModel, validated: BaseModel) -> None:
    assert type(built) is type(validated)
    assert built == validated
    assert built.model_fields_set == validated.model_fields_set
    assert built.model_dump(mode="json") == validated.model_dump(mode="json")
    assert built.model_dump_json(exclude_unset=True) == validated.model_dump_json(
        exclude_unset=True
    )


def memory(text: str, entity: Any = USER, **extra: Any) -> Memory:
    return Memory(
        agent_id=AGENT, entity_id=entity, room_id=ROOM, content=Content(text=text, **extra)
    )


def test_message_received_and_sent() -> None:
    message = memory("hello")
    same(
        message_payload(AGENT, message),
        MessagePayload(agent_id=AGENT, room_id=ROOM, entity_id=USER, message=message),
    )
    reply = memory("hi", entity=AGENT, in_reply_to=str(message.id), actions=[])
    timings = {"memory": 0.001, "total": 0.002}
    sent = sent_payload(AGENT, reply, message.id, timings)
    same(
        sent,
        MessagePayload(
            agent_id=AGENT,
            room_id=ROOM,
            entity_id=AGENT,
            message=reply,
            in_reply_to=message.id,
            timings=timings,
        ),
    )
    timings["later"] = 1.0  # the payload's timings are its own
    assert "later" not in sent.timings


def test_memory_created() -> None:
    stored = memory("a fact", table_name="facts").model_copy(update={"table_name": "facts"})
    same(
        memory_payload(AGENT, stored),
        MemoryPayload(
            agent_id=AGENT,
            room_id=ROOM,
            entity_id=USER,
            memory_id=stored.id,
            table_name="facts",
            memory=stored,
        ),
    )


def test_reply() -> None:
    message = memory("hello")
    actions = [ActionResult(success=True, text="done", name="act")]
    fields: dict[str, Any] = {
        "responded": True,
        "text": "hi",
        "reply": memory("hi", entity=AGENT),
        "actions": actions,
        "evaluators": [],
        "timings": {"total": 0.5},
    }
    built = reply_of(AGENT, message, skipped={"slow": "timed out"}, **fields)
    validated = Reply(
        agent_id=AGENT,
        room_id=ROOM,
        message_id=message.id,
        skipped_providers={"slow": "timed out"},
        **fields,
    )
    same(built, validated)
    built.text = "changed"  # a reply is not frozen: its fields set is its own
    other = reply_of(AGENT, message, skipped={}, **fields)
    assert other.model_fields_set == validated.model_fields_set
    nothing = reply_of(
        AGENT,
        message,
        responded=False,
        text="",
        reply=None,
        actions=[],
        evaluators=[],
        skipped={},
        timings={},
    )
    assert nothing == Reply(agent_id=AGENT, room_id=ROOM, message_id=message.id, responded=False)
    assert nothing.model_fields_set == set(Reply.model_fields)  # as the turn always gave all


def test_reply_memory() -> None:
    """The reply's memory built from the turn's values is `Memory(...)`'s, content included;
    an id or a time validation would change (not UTC, another type) is validated."""
    message = memory("hello")
    reply_id, at = uuid4(), datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    metadata = {"model_fallback": {"model_type": "TEXT_LARGE"}}
    built = reply_memory(reply_id, AGENT, message, "hi", ["act", None], metadata, at)
    validated = Memory(
        id=reply_id,
        agent_id=AGENT,
        entity_id=AGENT,
        room_id=ROOM,
        content=Content(text="hi", in_reply_to=str(message.id), actions=["act", None]),
        metadata=metadata,
        created_at=at,
    )
    same(built, validated)
    same(built.content, validated.content)
    assert built.content.model_extra == validated.content.model_extra
    paris = datetime(2026, 12, 7, 16, 0, tzinfo=timezone(timedelta(hours=1)))
    converted = reply_memory(reply_id, AGENT, message, "hi", [], {}, paris)
    assert converted.created_at.tzinfo is UTC and converted.created_at == paris
    with pytest.raises(ValidationError, match="timezone-aware"):
        reply_memory(reply_id, AGENT, message, "hi", [], {}, datetime(2026, 12, 7))
    as_text = reply_memory(str(reply_id), AGENT, message, "hi", [], {}, at)  # type: ignore[arg-type]
    assert as_text.id == reply_id


def test_params_and_state_built_unvalidated() -> None:
    """The embedding and reply params and the composed state's start equal the validated
    models; a kind validation refuses is still refused."""
    same(_params("some text", "query"), EmbeddingParams(text="some text", kind="query"))
    same(_params("some text", "passage"), EmbeddingParams(text="some text", kind="passage"))
    with pytest.raises(ValidationError):
        _params("some text", "neither")  # type: ignore[arg-type]
    character = Character(name="Eliza", bio=["A therapist."])
    state = State(values={"agent_id": str(AGENT)})
    params = reply_params(character, state, memory("hello"))
    validated = TextParams(prompt=params.prompt, system="You are Eliza. A therapist.")
    same(params, validated)
    scope = object()
    built = _state({"agent_id": str(AGENT)}, scope)  # type: ignore[arg-type]
    state._services = scope  # type: ignore[assignment]
    same(built, state)
    assert built.services is scope
    built.text = "set later"
    assert built.model_fields_set == {"values", "text"}
    assert _state({}, None).model_fields_set == {"values"}  # each state's set is its own


def test_a_memory_embedded_for_saving_is_its_model_copy() -> None:
    """Saving adds the vector to a plain, a stored (trusted) or a lazily decoded memory as
    ``model_copy(update=...)`` does, fields set included; the original is left as it was."""
    vector = Vector([0.5, 0.25, 0.125])
    plain = memory("hello", source="test")
    row = (
        7,
        uuid4().bytes,
        "messages",
        AGENT.bytes,
        USER.bytes,
        ROOM.bytes,
        1_700_000_000_000_001,
        content_json(Content(text="stored", source="db")),
        metadata_json({"k": 1}),
        None,
        0,
    )
    for original in (plain, row_to_memory(row), lazy_rows_to_memories([row])[0]):
        copied = _embedded(original, vector)
        same(copied, original.model_copy(update={"embedding": vector}))
        assert copied.embedding is vector and original.embedding is None
    assert "embedding" not in plain.model_fields_set  # its own set is not changed
